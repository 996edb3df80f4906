using System.Diagnostics;
using System.Runtime.CompilerServices;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Forwarding.Http1;

/// <summary>
/// One request and its response on one pooled connection. The request head goes out, then the
/// body streams from the client while the response head is awaited (a backend may answer before
/// it has read the whole body, a 413 to an upload say, and that answer is what the client gets).
/// The response body is then read through <see cref="ReadBodyAsync"/>, framed by Content-Length,
/// chunks or the end of the connection. At the end the connection goes back to its pool when the
/// exchange left it clean, and is closed otherwise. A timer firing or the client going away closes
/// the connection, which fails whatever is pending; the timer's state says why.
/// </summary>
internal sealed class Http1Exchange : IDisposable
{
    private ForwardingTimer _timer;
    private Http1Connection? _connection;
    private CancellationTokenRegistration _abort;
    private Http1RequestBody? _body;
    private Task? _sending;
    private long _remaining;
    private ChunkState _chunk;
    private int _headLimit = Http1Connection.MaxHeadSize;
    private bool _bodyDone;
    private volatile bool _headReceived;

    public Http1Exchange(ForwardingTimer timer) => _timer = timer;

    /// <summary>
    /// Makes a finished exchange (disposed, its body sent whole, so nothing still refers to it) a
    /// new one under <paramref name="timer"/>: a connection's next request reuses it.
    /// </summary>
    public Http1Exchange Reset(ForwardingTimer timer)
    {
        _timer = timer;
        _connection = null;
        _abort = default;
        _body = null;
        _sending = null;
        _remaining = 0;
        _chunk = ChunkState.Size;
        _headLimit = Http1Connection.MaxHeadSize;
        _bodyDone = false;
        _headReceived = false;
        Connecting = false;
        ConnectTicks = 0;
        OnReusedConnection = false;
        ResponseBytes = 0;
        return this;
    }

    private enum ChunkState
    {
        Size,
        Data,
        DataEnd,
        Trailers,
    }

    /// <summary>The response head, once <see cref="ReadHeadAsync"/> returned (the connection's, reused exchange after exchange).</summary>
    public Http1Response Response => _connection!.Response;

    /// <summary>True while a new connection is being opened for this exchange.</summary>
    public bool Connecting { get; private set; }

    /// <summary>Stopwatch ticks spent opening a new connection; 0 when a pooled one was used.</summary>
    public long ConnectTicks { get; private set; }

    public double ConnectMilliseconds => ConnectTicks == 0 ? -1 : Stopwatch.GetElapsedTime(0, ConnectTicks).TotalMilliseconds;

    /// <summary>True when the connection came from the pool, so a failure before any response byte may just mean it went stale.</summary>
    public bool OnReusedConnection { get; private set; }

    /// <summary>Response bytes received so far (the head included).</summary>
    public long ResponseBytes { get; private set; }

    /// <summary>True once the response body has been read to its end (known without another read for a Content-Length body).</summary>
    public bool BodyDone => _bodyDone;

    /// <summary>True when the request body, if any, has been sent whole.</summary>
    public bool BodySent => _sending is null || _sending.IsCompletedSuccessfully;

    /// <summary>Takes a pooled connection or opens one, and ties it to the timer.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    public async ValueTask OpenAsync(Http1ConnectionPool pool, int maxConnections, TimeSpan connectTimeout, bool fresh, UpstreamTls? tls = null)
    {
        var token = _timer.Token;
        var connection = await pool.RentAsync(maxConnections, fresh, token, tls).ConfigureAwait(false);
        OnReusedConnection = connection is not null;
        if (connection is null)
        {
            var started = Stopwatch.GetTimestamp();
            Connecting = true;
            connection = await pool.ConnectAsync(connectTimeout, token, tls).ConfigureAwait(false);
            Connecting = false;
            ConnectTicks = Stopwatch.GetTimestamp() - started;
        }
        _connection = connection;
        // A timeout or the client leaving closes the connection: pending reads and writes fail at once.
        _abort = token.UnsafeRegister(static s => ((Http1Connection)s!).Abort(), connection);
    }

    /// <summary>Sends the head, and starts the body (it flows on while the response is awaited).</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    public async ValueTask SendAsync(ProxyExchange incoming, PoolConfig pool, BackendState backend, RequestRecord record, Http1RequestBody? body)
    {
        var connection = _connection!;
        var chunked = body is not null && incoming.ContentLength is null;
        var buffer = connection.SendBuffer;
        var length = Http1RequestHead.Write(ref buffer, incoming, pool, backend, record, body is null ? null : incoming.ContentLength, chunked);
        connection.SendBuffer = buffer;
        if (body is null)
        {
            await connection.SendAsync(buffer.AsMemory(0, length)).ConfigureAwait(false);
            return;
        }
        _body = body;
        _sending = body.SendAsync(connection, length, chunked, this);
        if (_sending.IsFaulted)
        {
            // Failed before the head left (the client's body broke at once): report it now.
            await _sending.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Reads the response head, passing over interim 1xx responses (but 101). The heads together,
    /// interim ones included, must fit in <paramref name="limit"/> bytes, so a backend that sends
    /// 1xx answers for ever is cut off rather than read until the response timeout.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    public async ValueTask ReadHeadAsync(bool headRequest, int limit = Http1Connection.MaxHeadSize)
    {
        var connection = _connection!;
        _headLimit = limit;
        var interim = 0;
        while (true)
        {
            var buffered = connection.Buffered;
            if (buffered.Length > 0)
            {
                var used = Response.TryParse(buffered, headRequest);
                // Checked here too, not only when the buffer must grow: a head under the buffer's
                // size but over a smaller configured limit arrives in one read.
                if (used > limit - interim || (used == 0 && buffered.Length >= limit - interim))
                {
                    throw new HttpRequestException(HttpRequestError.ConfigurationLimitExceeded, interim > 0
                        ? $"the response head and the interim (1xx) responses before it are larger than {limit / 1024} KiB (limits.upstream_response_headers)"
                        : $"the response head is larger than {limit / 1024} KiB (limits.upstream_response_headers)");
                }
                if (used > 0)
                {
                    connection.Consume(used);
                    if (Response.Status is >= 100 and < 200 && Response.Status != 101)
                    {
                        // 100 Continue, 103 Early Hints: the final response follows, and all of
                        // them count against the limit (a backend sending 1xx for ever is cut off).
                        interim += used;
                        continue;
                    }
                    _headReceived = true;
                    _remaining = Response.Framing == BodyFraming.Length ? Response.ContentLength : 0;
                    _chunk = ChunkState.Size;
                    _bodyDone = Response.Framing == BodyFraming.None || (Response.Framing == BodyFraming.Length && _remaining == 0);
                    return;
                }
            }
            var read = await connection.FillAsync(limit - interim).ConfigureAwait(false);
            if (read == 0)
            {
                if (_sending is { IsFaulted: true })
                {
                    // The body failed first (the client's side, or the write): that is the story.
                    await _sending.ConfigureAwait(false);
                }
                throw new HttpRequestException(HttpRequestError.ResponseEnded, ResponseBytes == 0
                    ? "the backend closed the connection before sending a response"
                    : "the backend closed the connection in the middle of the response head");
            }
            ResponseBytes += read;
        }
    }

    /// <summary>
    /// Reads response body bytes into <paramref name="destination"/>: 0 at the body's end, whose
    /// trailers are then in <see cref="Http1Response.Trailers"/>. A body cut short throws.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    public async ValueTask<int> ReadBodyAsync(Memory<byte> destination)
    {
        var connection = _connection!;
        while (true)
        {
            if (_bodyDone)
            {
                return 0;
            }
            switch (Response.Framing)
            {
                case BodyFraming.Length:
                {
                    var want = (int)Math.Min(destination.Length, _remaining);
                    var n = connection.BufferedCount > 0
                        ? connection.TakeBuffered(destination.Span[..want])
                        : await connection.ReceiveAsync(destination[..want]).ConfigureAwait(false);
                    if (n == 0)
                    {
                        throw new IOException($"the backend closed the connection {_remaining} bytes before the end of the body its Content-Length announced");
                    }
                    _remaining -= n;
                    ResponseBytes += n;
                    _bodyDone = _remaining == 0;
                    return n;
                }
                case BodyFraming.UntilClose:
                {
                    var n = connection.BufferedCount > 0
                        ? connection.TakeBuffered(destination.Span)
                        : await connection.ReceiveAsync(destination).ConfigureAwait(false);
                    ResponseBytes += n;
                    _bodyDone = n == 0;
                    return n;
                }
                case BodyFraming.Chunked:
                {
                    if (ParseChunked(connection, destination.Span, out var n))
                    {
                        if (n > 0 || _bodyDone)
                        {
                            return n;
                        }
                        continue;
                    }
                    if (await connection.FillAsync().ConfigureAwait(false) == 0)
                    {
                        throw new IOException("the backend closed the connection in the middle of a chunked body");
                    }
                    continue;
                }
                default:
                    _bodyDone = true;
                    return 0;
            }
        }
    }

    /// <summary>
    /// Moves the chunked body on by what is buffered: false when more bytes are needed; else true
    /// with <paramref name="copied"/> data bytes (0 when only framing was consumed).
    /// </summary>
    private bool ParseChunked(Http1Connection connection, Span<byte> destination, out int copied)
    {
        copied = 0;
        var buffered = connection.Buffered;
        switch (_chunk)
        {
            case ChunkState.Size:
            {
                var lf = buffered.IndexOf((byte)'\n');
                if (lf < 0)
                {
                    if (buffered.Length > 4096)
                    {
                        throw Http1Response.Invalid("a chunk-size line longer than 4 KiB");
                    }
                    return false;
                }
                var line = buffered[..lf];
                if (!line.IsEmpty && line[^1] == (byte)'\r')
                {
                    line = line[..^1];
                }
                var semicolon = line.IndexOf((byte)';');
                var hex = (semicolon < 0 ? line : line[..semicolon]).TrimEnd(" \t"u8);
                long size = 0;
                if (hex.IsEmpty || hex.Length > 15)
                {
                    throw Http1Response.Invalid("a chunk size that is empty or too large");
                }
                foreach (var c in hex)
                {
                    var digit = c switch
                    {
                        >= (byte)'0' and <= (byte)'9' => c - '0',
                        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
                        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
                        _ => -1,
                    };
                    if (digit < 0)
                    {
                        throw Http1Response.Invalid("a chunk size that is not hexadecimal");
                    }
                    size = (size * 16) + digit;
                }
                connection.Consume(lf + 1);
                ResponseBytes += lf + 1;
                _remaining = size;
                _chunk = size == 0 ? ChunkState.Trailers : ChunkState.Data;
                return true;
            }
            case ChunkState.Data:
            {
                if (buffered.IsEmpty)
                {
                    return false;
                }
                var n = (int)Math.Min(Math.Min(buffered.Length, _remaining), destination.Length);
                buffered[..n].CopyTo(destination);
                connection.Consume(n);
                ResponseBytes += n;
                _remaining -= n;
                if (_remaining == 0)
                {
                    _chunk = ChunkState.DataEnd;
                }
                copied = n;
                return true;
            }
            case ChunkState.DataEnd:
            {
                if (buffered.StartsWith("\r\n"u8) || buffered.StartsWith("\n"u8))
                {
                    var n = buffered[0] == (byte)'\r' ? 2 : 1;
                    connection.Consume(n);
                    ResponseBytes += n;
                    _chunk = ChunkState.Size;
                    return true;
                }
                if (buffered.Length < 2 && (buffered.IsEmpty || buffered[0] == (byte)'\r'))
                {
                    return false;
                }
                throw Http1Response.Invalid("chunk data longer than its size");
            }
            default:
            {
                var used = Response.TryParseTrailers(buffered);
                if (used == 0)
                {
                    if (buffered.Length > _headLimit)
                    {
                        throw Http1Response.Invalid($"trailers larger than {_headLimit / 1024} KiB");
                    }
                    return false;
                }
                connection.Consume(used);
                ResponseBytes += used;
                _bodyDone = true;
                return true;
            }
        }
    }

    /// <summary>Waits for the request body to be sent whole; a failure only means the connection is not kept.</summary>
    public async ValueTask FinishSendingAsync()
    {
        try
        {
            await _sending!.ConfigureAwait(false);
        }
        catch (Exception e) when (IsSendFailure(e))
        {
            // The upload broke after the answer was relayed: nothing more to tell the client.
        }
    }

    /// <summary>
    /// The exchange failed before an answer: ends the body's sending (a pending read of the
    /// client's body is cancelled, a pending write fails with the connection) and waits for it, so
    /// nothing else reads the client's body while it still does.
    /// </summary>
    public async ValueTask StopSendingAsync()
    {
        if (_sending is null || _sending.IsCompleted)
        {
            return;
        }
        _body!.CancelPendingRead();
        _connection?.Abort();
        try
        {
            await _sending.ConfigureAwait(false);
        }
        catch (Exception e) when (IsSendFailure(e))
        {
            // Expected: it was stopped; the exchange's own failure is what is reported.
        }
    }

    private static bool IsSendFailure(Exception e) =>
        e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException or BadHttpRequestException;

    /// <summary>Called by the body when it has been sent whole: from now the backend has the response timeout.</summary>
    internal void BodyFinished(TimeSpan responseTimeout)
    {
        if (!_headReceived)
        {
            _timer.AwaitResponse(responseTimeout);
        }
    }

    /// <summary>
    /// Ends the exchange: the connection goes back to its pool when the response was read to its
    /// end, the request body was sent whole, both sides keep it alive and nothing is left over;
    /// otherwise it is closed.
    /// </summary>
    public void Dispose()
    {
        var connection = _connection;
        if (connection is null)
        {
            return;
        }
        _connection = null;
        // Untie the timer first: once this returns, it can no longer close a connection that is back in the pool.
        _abort.Dispose();
        var sendingDone = BodySent;
        var reusable = _bodyDone && _headReceived && connection.Response.KeepAlive && sendingDone && connection.BufferedCount == 0 && !connection.IsDisposed;
        if (!sendingDone)
        {
            // Still sending a body the backend no longer waits for: the connection cannot be reused.
            connection.Abort();
            _sending!.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        connection.Pool.Return(connection, reusable);
    }
}
