using System.Buffers;
using Fulcrum.Runtime;

namespace Fulcrum.Forwarding;

/// <summary>Why Fulcrum itself closed a tunnel (null when one of its ends did).</summary>
internal static class TunnelCloseReasons
{
    public const string Idle = "tunnel_idle";
    public const string MaxLifetime = "tunnel_max";
    public const string Drained = "backend_drained";
    public const string Shutdown = "shutdown";

    /// <summary>The backend hung up without a close frame; the client was sent 1001 in its place.</summary>
    public const string BackendGone = "backend_gone";
}

/// <summary>
/// One open tunnel: after a <c>101 Switching Protocols</c> (or an HTTP/2 extended CONNECT turned
/// into one), the bytes each side sends are relayed to the other unchanged until either side hangs
/// up or Fulcrum closes it (idle, lifetime, a drained backend, shutdown).
/// </summary>
/// <remarks>
/// Each direction is a pump: wait for data with a zero-byte read (so an idle tunnel holds no
/// buffer), read into a pooled buffer, write it on. When Fulcrum closes a WebSocket tunnel it
/// stops both pumps at a write boundary and, where the stream sits between two frames and no close
/// has gone that way yet, sends a close frame 1001 (going away) to that side; other tunnels are
/// closed with a TCP close.
/// </remarks>
internal sealed class Tunnel
{
    private const int BufferSize = 16 * 1024;

    /// <summary>What an idle backend-side read waits in (SocketsHttpHandler buffers 4 KiB of its own below it).</summary>
    private const int SmallBufferSize = 256;

    /// <summary>How long the peers get to answer a close frame and hang up.</summary>
    private static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(1);

    /// <summary>How long the other direction may go on after one side of a non-WebSocket tunnel hangs up.</summary>
    private static readonly TimeSpan HalfCloseGrace = TimeSpan.FromSeconds(1);

    private readonly Stream _client;
    private readonly Stream _upstream;
    private readonly TimeProvider _time;
    private readonly Action _abortClient;
    private readonly CancellationTokenSource _stopReading = new();
    private readonly CancellationTokenSource _stopWriting = new();
    private readonly TaskCompletionSource<string> _closeRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Direction _toBackend;
    private readonly Direction _toClient;
    private long _lastActivity;

    public Tunnel(BackendState backend, PoolState pool, Stream client, Stream upstream, bool webSocket, TimeSpan idle, TimeSpan? maxLifetime, TimeProvider time, Action abortClient)
    {
        Backend = backend;
        Pool = pool;
        _client = client;
        _upstream = upstream;
        WebSocket = webSocket;
        Idle = idle;
        MaxLifetime = maxLifetime;
        _time = time;
        _abortClient = abortClient;
        Started = time.GetTimestamp();
        _lastActivity = Started;
        _toBackend = new Direction(webSocket ? new WebSocketFrameTracker() : null, masked: true, zeroByteReads: true);
        // SocketsHttpHandler's stream of a switched connection answers a zero-byte read with 0 at
        // once instead of waiting for data, so that side waits with a small buffer of its own.
        _toClient = new Direction(webSocket ? new WebSocketFrameTracker() : null, masked: false, zeroByteReads: false);
    }

    public BackendState Backend { get; }

    public PoolState Pool { get; }

    public bool WebSocket { get; }

    public TimeSpan Idle { get; }

    public TimeSpan? MaxLifetime { get; }

    /// <summary>When the tunnel opened, as a <see cref="TimeProvider"/> timestamp.</summary>
    public long Started { get; }

    /// <summary>When a byte last moved either way.</summary>
    public long LastActivity => Volatile.Read(ref _lastActivity);

    public long BytesFromClient => Volatile.Read(ref _toBackend.Bytes);

    public long BytesToClient => Volatile.Read(ref _toClient.Bytes);

    /// <summary>Asks the tunnel to close itself (idempotent: the first reason counts).</summary>
    public void Close(string reason) => _closeRequested.TrySetResult(reason);

    /// <summary>Relays until the tunnel ends; returns the reason when Fulcrum closed it, else null.</summary>
    public async Task<string?> RunAsync()
    {
        var toBackend = PumpAsync(_client, _upstream, _toBackend);
        var toClient = PumpAsync(_upstream, _client, _toClient);
        var both = Task.WhenAll(toBackend, toClient);
        var first = await Task.WhenAny(toBackend, toClient, _closeRequested.Task).ConfigureAwait(false);
        string? closedBy = null;
        if (first == _closeRequested.Task)
        {
            closedBy = _closeRequested.Task.Result;
            if (WebSocket)
            {
                await Task.WhenAll(
                    GoodbyeAsync(_upstream, _toBackend, "going away"),
                    GoodbyeAsync(_client, _toClient, "going away")).ConfigureAwait(false);
                // Give the peers a moment to answer the close and hang up.
                await Task.WhenAny(both, Task.Delay(CloseGrace, _time)).ConfigureAwait(false);
            }
        }
        else if (WebSocket && !_toBackend.Frames!.CloseSeen && !_toClient.Frames!.CloseSeen)
        {
            // One side hung up with no close frame at all (a backend stopped or crashed, a client
            // that vanished). The other side is told in WebSocket terms, 1001 with a reason,
            // rather than by a bare TCP close that a browser reports as 1006 with no reason.
            if (first == toClient)
            {
                closedBy = TunnelCloseReasons.BackendGone;
                await GoodbyeAsync(_client, _toClient, "the backend closed the connection").ConfigureAwait(false);
            }
            else
            {
                await GoodbyeAsync(_upstream, _toBackend, "the client closed the connection").ConfigureAwait(false);
            }
            await Task.WhenAny(both, Task.Delay(CloseGrace, _time)).ConfigureAwait(false);
        }
        else if (WebSocket && _toBackend.Frames!.CloseSeen && _toClient.Frames!.CloseSeen)
        {
            // Close frames have crossed both ways: the closing handshake is over (RFC 6455
            // §7.1.1) and one side has hung up. The other is waiting for exactly that (a client
            // waits for the server's TCP close, browsers fire onclose only then), so end now.
        }
        else if (!WebSocket || _toBackend.Frames!.CloseSeen || _toClient.Frames!.CloseSeen)
        {
            // One side hung up. Another protocol may still be sending the other way, and so may a
            // WebSocket in its close handshake (its closing side may hang up right after its close
            // frame, before the answer): that direction gets a moment to finish.
            await Task.WhenAny(both, _closeRequested.Task, Task.Delay(HalfCloseGrace, _time)).ConfigureAwait(false);
        }

        // Pumps parked in a read stop now; one stuck writing to a peer that reads nothing is cut.
        await _stopReading.CancelAsync().ConfigureAwait(false);
        if (await Task.WhenAny(both, Task.Delay(CloseGrace, _time)).ConfigureAwait(false) != both)
        {
            await _stopWriting.CancelAsync().ConfigureAwait(false);
            _abortClient();
            await _upstream.DisposeAsync().ConfigureAwait(false);
        }
        await both.ConfigureAwait(false);
        await _upstream.DisposeAsync().ConfigureAwait(false);
        _stopReading.Dispose();
        _stopWriting.Dispose();
        return closedBy;
    }

    private async Task PumpAsync(Stream source, Stream destination, Direction direction)
    {
        byte[]? buffer = null;
        var full = false;
        try
        {
            while (true)
            {
                Memory<byte> into;
                if (full)
                {
                    into = buffer!;
                }
                else if (direction.ZeroByteReads)
                {
                    // Wait for data without a buffer: ten thousand idle tunnels hold none.
                    await source.ReadAsync(Memory<byte>.Empty, _stopReading.Token).ConfigureAwait(false);
                    buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
                    into = buffer;
                }
                else
                {
                    // Wait with the direction's own small buffer; a big one only once that fills.
                    into = direction.Small;
                }
                var read = await source.ReadAsync(into, _stopReading.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    return;
                }
                Volatile.Write(ref _lastActivity, _time.GetTimestamp());
                direction.Bytes += read;
                await direction.WriteLock.WaitAsync(_stopWriting.Token).ConfigureAwait(false);
                try
                {
                    if (!direction.Closed) // else Fulcrum has said goodbye this way: what follows is dropped
                    {
                        direction.Frames?.Feed(into.Span[..read]);
                        await destination.WriteAsync(into[..read], _stopWriting.Token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    direction.WriteLock.Release();
                }
                // A full read means more is likely waiting: read again at once, into a big buffer.
                full = read == into.Length;
                if (full)
                {
                    buffer ??= ArrayPool<byte>.Shared.Rent(BufferSize);
                }
                else if (buffer is not null)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = null;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException or System.Net.Http.HttpRequestException or InvalidOperationException)
        {
            // A side went away or the tunnel is being closed: the pump simply ends.
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>Sends a close frame 1001 one way, when the stream there sits between frames.</summary>
    private async Task GoodbyeAsync(Stream destination, Direction direction, string reason)
    {
        try
        {
            if (!await direction.WriteLock.WaitAsync(CloseGrace).ConfigureAwait(false))
            {
                return; // the pump is stuck writing to a peer that reads nothing
            }
        }
        catch (ObjectDisposedException)
        {
            return;
        }
        try
        {
            direction.Closed = true;
            if (direction.Frames is { AtBoundary: true, CloseSeen: false, Lost: false })
            {
                using var timeout = new CancellationTokenSource(CloseGrace);
                await destination.WriteAsync(WebSocketFrames.Close(WebSocketFrames.GoingAway, reason, direction.Masked), timeout.Token).ConfigureAwait(false);
                await destination.FlushAsync(timeout.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException or System.Net.Http.HttpRequestException or InvalidOperationException)
        {
        }
        finally
        {
            direction.WriteLock.Release();
        }
    }

    /// <summary>One way through the tunnel: its frames, its write lock and its byte count.</summary>
    private sealed class Direction(WebSocketFrameTracker? frames, bool masked, bool zeroByteReads)
    {
        public readonly SemaphoreSlim WriteLock = new(1, 1);
        public long Bytes;
        private byte[]? _small;

        /// <summary>Whether the source waits on a zero-byte read (Kestrel's streams do).</summary>
        public bool ZeroByteReads { get; } = zeroByteReads;

        /// <summary>The buffer an idle read waits in when the source cannot wait on a zero-byte read.</summary>
        public byte[] Small => _small ??= new byte[SmallBufferSize];

        public WebSocketFrameTracker? Frames { get; } = frames;

        /// <summary>Frames this way must be masked: they go to the backend, a WebSocket server.</summary>
        public bool Masked { get; } = masked;

        /// <summary>Fulcrum has closed this way; nothing more is written.</summary>
        public bool Closed { get; set; }
    }
}
