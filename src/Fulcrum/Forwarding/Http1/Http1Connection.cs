using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Fulcrum.Forwarding.Http1;

/// <summary>
/// One HTTP/1.1 connection to a backend: its socket, the buffer responses are parsed from, and the
/// buffer request heads are written into. It carries one exchange at a time; between exchanges it
/// waits in its <see cref="Http1ConnectionPool"/> with a read already posted, so a backend that
/// closed it (its own keep-alive timeout) or sent bytes nobody asked for is noticed before a
/// request is put on it, and the next response needs no read of its own to start.
/// </summary>
internal sealed class Http1Connection : IDisposable
{
    /// <summary>The receive buffer; a response head must fit in <see cref="MaxHeadSize"/>.</summary>
    internal const int BufferSize = 16 * 1024;

    /// <summary>The largest response head accepted, as SocketsHttpHandler's default (64 KiB).</summary>
    internal const int MaxHeadSize = 64 * 1024;

    private readonly Socket _socket;
    private readonly System.Net.Security.SslStream? _tls; // all reads and writes go through it when set
    private byte[] _receive = new byte[BufferSize];
    private int _start;
    private int _end;
    private ValueTask<int> _readAhead;
    private bool _readingAhead;
    private int _disposed;

    public Http1Connection(Socket socket, Http1ConnectionPool pool, System.Net.Security.SslStream? tls = null, UpstreamTls? settings = null)
    {
        _socket = socket;
        _tls = tls;
        Tls = settings;
        Pool = pool;
    }

    /// <summary>The TLS settings it was made with (null: cleartext); a pool whose settings changed passes it over.</summary>
    public UpstreamTls? Tls { get; }

    private ValueTask<int> Receive(Memory<byte> into) => _tls is null ? _socket.ReceiveAsync(into, SocketFlags.None) : _tls.ReadAsync(into);

    public Http1ConnectionPool Pool { get; }

    /// <summary>The head of the response being read: its lists are reused by each exchange.</summary>
    public Http1Response Response { get; } = new();

    /// <summary>The request head is written here; it grows for a large head and is kept.</summary>
    public byte[] SendBuffer { get; set; } = new byte[4096];

    /// <summary>When it went back to the pool (<see cref="Environment.TickCount64"/>).</summary>
    public long IdleSince { get; set; }

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Bytes received and not yet consumed.</summary>
    public ReadOnlySpan<byte> Buffered => _receive.AsSpan(_start, _end - _start);

    public int BufferedCount => _end - _start;

    public void Consume(int count) => _start += count;

    /// <summary>Copies up to <paramref name="destination"/>'s length of buffered bytes and consumes them.</summary>
    public int TakeBuffered(Span<byte> destination)
    {
        var n = Math.Min(destination.Length, _end - _start);
        _receive.AsSpan(_start, n).CopyTo(destination);
        _start += n;
        return n;
    }

    /// <summary>
    /// Receives more bytes after those buffered; 0 when the backend closed its side. The unread
    /// bytes are moved to the front first, and the buffer grows (up to <paramref name="limit"/>)
    /// when they fill it.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    public async ValueTask<int> FillAsync(int limit = BufferSize)
    {
        if (_readingAhead)
        {
            _readingAhead = false;
            var ahead = await _readAhead.ConfigureAwait(false);
            _end += ahead;
            return ahead;
        }
        if (_start == _end)
        {
            _start = _end = 0;
        }
        else if (_end == _receive.Length)
        {
            if (_start > 0)
            {
                _receive.AsSpan(_start, _end - _start).CopyTo(_receive);
                _end -= _start;
                _start = 0;
            }
            else if (_receive.Length < limit)
            {
                Array.Resize(ref _receive, Math.Min(limit, _receive.Length * 2));
            }
            else
            {
                throw new HttpRequestException(HttpRequestError.ConfigurationLimitExceeded, $"the response head is larger than {limit / 1024} KiB");
            }
        }
        var read = await Receive(_receive.AsMemory(_end)).ConfigureAwait(false);
        _end += read;
        return read;
    }

    /// <summary>
    /// Receives straight into <paramref name="destination"/>, once nothing is buffered; 0 at the
    /// end of the stream. Only for a body: reading the head has already taken the idle read.
    /// </summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> destination)
    {
        System.Diagnostics.Debug.Assert(!_readingAhead && _start == _end, "a body read while the head's bytes are unread");
        return Receive(destination);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    public async ValueTask SendAsync(ReadOnlyMemory<byte> bytes)
    {
        if (_tls is not null)
        {
            await _tls.WriteAsync(bytes).ConfigureAwait(false);
            return;
        }
        while (!bytes.IsEmpty)
        {
            var sent = await _socket.SendAsync(bytes, SocketFlags.None).ConfigureAwait(false);
            bytes = bytes[sent..];
        }
    }

    /// <summary>
    /// Idle in the pool from now: posts a read, whose completion before the next exchange means
    /// the connection cannot be used (the backend closed it, or sent bytes out of turn).
    /// </summary>
    public void StartIdle()
    {
        _start = _end = 0;
        IdleSince = Environment.TickCount64;
        try
        {
            _readAhead = Receive(_receive.AsMemory());
            _readingAhead = true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            Dispose();
        }
    }

    /// <summary>True when the idle read is still waiting: nothing came, nothing closed.</summary>
    public bool StillUsable()
    {
        if (IsDisposed)
        {
            return false;
        }
        if (_readingAhead && _readAhead.IsCompleted)
        {
            // Data out of turn, or the end of the stream, or an error: none leaves it usable.
            _readingAhead = false;
            try
            {
                _readAhead.GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
            {
                // Observed; the connection goes.
            }
            return false;
        }
        return true;
    }

    /// <summary>Closes the socket at once: pending reads and writes fail. Safe from any thread, more than once.</summary>
    public void Abort() => Dispose();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        try
        {
            // The socket first: a pending TLS read or write fails at once rather than waiting.
            _socket.Dispose();
            _tls?.Dispose();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Closing what already broke.
        }
        Pool.Closed(this);
    }
}
