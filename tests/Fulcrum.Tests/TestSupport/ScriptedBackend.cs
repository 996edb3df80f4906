using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Fulcrum.Tests.TestSupport;

/// <summary>A backend on a raw socket whose every connection runs a script: what no well-behaved server would do.</summary>
internal sealed class ScriptedBackend : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly List<Task> _serving = [];
    private int _connections;

    private ScriptedBackend(TcpListener listener, Func<Conn, int, Task> script)
    {
        _listener = listener;
        _accepting = Task.Run(async () =>
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptSocketAsync(_stop.Token);
                }
                catch (Exception)
                {
                    return;
                }
                var index = Interlocked.Increment(ref _connections) - 1;
                lock (_serving)
                {
                    _serving.Add(Task.Run(async () =>
                    {
                        using (socket)
                        {
                            try
                            {
                                await script(new Conn(socket, Heads), index);
                                socket.Shutdown(SocketShutdown.Both);
                            }
                            catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
                            {
                                // The proxy closed its side.
                            }
                        }
                    }));
                }
            }
        });
    }

    public string Address => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Every request head received, in order.</summary>
    public ConcurrentQueue<string> Heads { get; } = new();

    /// <summary>A backend that answers every request head with the same bytes, whatever they are.</summary>
    public static Task<ScriptedBackend> AnsweringAsync(string response) => StartAsync(async (conn, _) =>
    {
        while (await conn.ReadHeadAsync() is not null)
        {
            await conn.WriteAsync(response);
        }
    });

    /// <summary>A backend that answers one request head per connection with these bytes, then closes it.</summary>
    public static Task<ScriptedBackend> AnsweringOnceAsync(string response) => StartAsync(async (conn, _) =>
    {
        await conn.ReadHeadAsync();
        await conn.WriteAsync(response);
    });

    public static Task<ScriptedBackend> StartAsync(Func<Conn, int, Task> script)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return Task.FromResult(new ScriptedBackend(listener, script));
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accepting;
        Task[] serving;
        lock (_serving)
        {
            serving = [.. _serving];
        }
        await Task.WhenAny(Task.WhenAll(serving), Task.Delay(2000));
    }

    /// <summary>One accepted connection: request heads in (bodies are not read), bytes out.</summary>
    internal sealed class Conn(Socket socket, ConcurrentQueue<string> heads)
    {
        private readonly byte[] _buffer = new byte[64 * 1024];
        private string _pending = "";

        /// <summary>The next request head, or null when the proxy closed the connection.</summary>
        public async Task<string?> ReadHeadAsync()
        {
            while (true)
            {
                var end = _pending.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    var head = _pending[..end];
                    _pending = _pending[(end + 4)..];
                    heads.Enqueue(head);
                    return head;
                }
                int n;
                try
                {
                    n = await socket.ReceiveAsync(_buffer, SocketFlags.None);
                }
                catch (SocketException)
                {
                    return null;
                }
                if (n == 0)
                {
                    return null;
                }
                _pending += Encoding.Latin1.GetString(_buffer, 0, n);
            }
        }

        /// <summary>The next <paramref name="count"/> bytes after the head, as Latin-1 text.</summary>
        public async Task<string> ReadBytesAsync(int count)
        {
            while (_pending.Length < count)
            {
                var n = await socket.ReceiveAsync(_buffer, SocketFlags.None);
                if (n == 0)
                {
                    break;
                }
                _pending += Encoding.Latin1.GetString(_buffer, 0, n);
            }
            var taken = _pending[..Math.Min(count, _pending.Length)];
            _pending = _pending[taken.Length..];
            return taken;
        }

        public async Task WriteAsync(string text) => await socket.SendAsync(Encoding.Latin1.GetBytes(text), SocketFlags.None);

        /// <summary>Resets the connection (RST, not FIN): what a crashing backend does.</summary>
        public void Reset()
        {
            socket.LingerState = new LingerOption(true, 0);
            socket.Close();
        }

        /// <summary>Closes the sending side and reads (and drops) whatever comes until the proxy closes too.</summary>
        public async Task CloseAndDrainAsync()
        {
            socket.Shutdown(SocketShutdown.Send);
            while (await socket.ReceiveAsync(_buffer, SocketFlags.None) > 0)
            {
            }
        }
    }
}
