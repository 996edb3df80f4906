using System.Buffers;
using System.IO.Pipelines;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace Fulcrum.Frontend;

/// <summary>
/// Fulcrum's HTTP/1.1 connection loop: a connection middleware on each HTTP/1.1 listener, over the
/// connection's pipes. Per request: read and strictly parse the head (<see cref="RequestHeadParser"/>),
/// run the one pipeline (<see cref="FrontendExchange"/> is its request and response), end the
/// response, drop what is left of the body, and loop for keep-alive and pipelined requests, which
/// are answered in order because each is read only after the previous one was answered.
/// </summary>
/// <remarks>
/// What it does not serve itself it hands to Kestrel's HTTP/1.1 on the same connection, the bytes
/// of the request unconsumed: upgrades (WebSocket), <c>Expect</c>, targets that are not
/// origin-form, and paths that need decoding or hold dot segments (Kestrel normalises them, and
/// the route must see the normalised path). Every head has passed the strict parser first, so what
/// Kestrel reads is well-formed.
/// </remarks>
/// <param name="pipeline">The one pipeline every request runs.</param>
/// <param name="listener">The listener's configuration now (a reload changes it): the server switch and max_requests_per_connection.</param>
/// <param name="startedWith">The configuration the listener started with: head limits and timeouts, as its Kestrel server has them, until a restart.</param>
/// <param name="protocolErrors">Where refused heads are counted and summarised.</param>
internal sealed class Http1Frontend(RunRequest pipeline, Func<ListenerConfig> listener, Func<ListenerConfig> startedWith, SummarisedLog protocolErrors)
{
    /// <summary>How much of an unread body is read away so the connection can carry the next request.</summary>
    private const long DrainLimit = 256 * 1024;

    private static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(1);

    /// <summary>After a refusal: read what the client still sends for this long once it goes quiet, then close.</summary>
    private static readonly TimeSpan LingerQuiet = TimeSpan.FromMilliseconds(100);

    private static readonly SearchValues<byte> PlainPath = SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"u8);

    /// <summary>Off when <c>FULCRUM_UPSTREAM_CLIENT=sockets</c>: that path is Kestrel's only.</summary>
    public static bool Enabled => HttpForwarder.UsePool;

    public async Task RunAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var config = listener();
        // ALPN chose HTTP/2 on a TLS listener: Kestrel's HTTP/2 serves it.
        if (config.Server != ListenerConfig.KestrelServer && Enabled && connection.Features.Get<Tls.TlsConnection>() is not { IsHttp2: true })
        {
            if (!await ServeAsync(connection, config, startedWith()).ConfigureAwait(false))
            {
                return;
            }
        }
        await next(connection).ConfigureAwait(false);
    }

    /// <summary>Serves requests until the connection ends (false) or one is for Kestrel (true).</summary>
    private async Task<bool> ServeAsync(ConnectionContext connection, ListenerConfig current, ListenerConfig config)
    {
        var input = connection.Transport.Input;
        // The head limits and timeouts the listener started with, the same as its Kestrel server
        // has for what is handed over (a reload says they wait for a restart); the request cap
        // as the configuration says now.
        var limits = new FrontendLimits(config.Limits.RequestLine, config.Limits.Headers, config.Limits.HeaderCount);
        var maxRequests = current.Limits.MaxRequestsPerConnection;
        var exchange = new FrontendExchange(connection);
        using var timer = new ReadTimer(input);
        // Shutdown (or a drain) asks each connection to close: an idle one closes now, a busy one
        // after its response, which says "Connection: close".
        using var closeAsked = connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.ConnectionClosedRequested.UnsafeRegister(
            static s =>
            {
                var (e, t) = ((FrontendExchange, ReadTimer))s!;
                e.RequestClose();
                t.FireNow();
            },
            (exchange, timer));
        byte[]? copy = null;
        var served = 0;
        try
        {
            while (!exchange.CloseRequested)
            {
                exchange.Release();
                // Waiting for a request: keep_alive; once its first byte came: request_header.
                timer.Arm(config.Timeouts.KeepAlive);
                var begun = false;
                ReadResult result;
                ReadOnlySequence<byte> buffer;
                ReadOnlySpan<byte> span;
                ParseResult parsed;
                Refusal refusal;
                while (true)
                {
                    result = await input.ReadAsync().ConfigureAwait(false);
                    buffer = result.Buffer;
                    if (result.IsCanceled)
                    {
                        input.AdvanceTo(buffer.Start);
                        if (begun && !exchange.CloseRequested)
                        {
                            await RefuseAsync(connection, config, timer, new Refusal(FulcrumError.RequestHeaderTimeout,
                                $"the request head did not arrive within {config.Timeouts.RequestHeader.TotalSeconds:0.###} s (listeners[].timeouts.request_header)")).ConfigureAwait(false);
                        }
                        return false; // an idle keep-alive connection timed out, or a head did
                    }
                    if (buffer.IsEmpty && result.IsCompleted)
                    {
                        return false; // the client closed between requests
                    }
                    if (!begun)
                    {
                        begun = true;
                        timer.Arm(config.Timeouts.RequestHeader);
                    }
                    if (buffer.IsSingleSegment)
                    {
                        span = buffer.FirstSpan;
                    }
                    else
                    {
                        // A head across blocks: parse one contiguous copy of as much as the limits allow.
                        var most = (int)Math.Min(buffer.Length, limits.RequestLine + limits.Headers + 8);
                        if (copy is null || copy.Length < most)
                        {
                            copy = new byte[Math.Max(most, 8 * 1024)];
                        }
                        buffer.Slice(0, most).CopyTo(copy);
                        span = copy.AsSpan(0, most);
                    }
                    parsed = RequestHeadParser.Parse(span, limits, exchange.Parsed, out refusal);
                    if (parsed != ParseResult.Incomplete)
                    {
                        break;
                    }
                    if (result.IsCompleted)
                    {
                        input.AdvanceTo(buffer.End);
                        return false; // the client closed in the middle of a head
                    }
                    input.AdvanceTo(buffer.Start, buffer.End);
                }
                if (!timer.Disarm())
                {
                    // The deadline passed (or a close was asked for) as the head completed: the
                    // cancellation it sent would land on the body's first read, so the
                    // connection ends here, as at the deadline.
                    return false;
                }

                if (parsed == ParseResult.Refused && served == 0 && span.Length > 0 && span[0] == 0x16 && current.Tls is null)
                {
                    // A TLS ClientHello on a cleartext listener: the client cannot read an HTTP
                    // answer, so it gets a clean close, and the operator a line that says why.
                    input.AdvanceTo(buffer.End);
                    protocolErrors.Report(current.Name, "tls_on_cleartext", "a TLS handshake arrived on a cleartext listener: the client wants https://, or the listener needs tls");
                    return false;
                }
                if (parsed == ParseResult.Refused)
                {
                    input.AdvanceTo(buffer.End);
                    await RefuseAsync(connection, config, timer, refusal).ConfigureAwait(false);
                    return false;
                }
                var head = exchange.Parsed;
                if (!ServedHere(head, span))
                {
                    // Kestrel reads this request (and the rest of the connection) from its first byte.
                    input.AdvanceTo(buffer.Start);
                    return true;
                }
                served++;
                exchange.Begin(span, head.Length, lastOnConnection: maxRequests is { } max && served >= max);
                input.AdvanceTo(buffer.GetPosition(head.Length));

                exchange.Listener = listener();
                await pipeline(exchange).ConfigureAwait(false);

                if (!await exchange.FinishAsync().ConfigureAwait(false))
                {
                    if (!exchange.WasAborted)
                    {
                        await LingerAsync(input, timer, exchange.Body.Done ? TimeSpan.Zero : DrainTime).ConfigureAwait(false);
                    }
                    return false;
                }
                if (exchange.CloseRequested)
                {
                    return false;
                }
                if (!exchange.Body.Done)
                {
                    // The backend answered without reading the whole body: read the rest away so
                    // the next request starts where it should, or close when it is too much.
                    using var drain = new CancellationTokenSource(DrainTime);
                    if (exchange.Body.FramingBroken || !await exchange.Body.DrainAsync(DrainLimit, drain.Token).ConfigureAwait(false))
                    {
                        return false;
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException or OperationCanceledException or InvalidOperationException)
        {
            // The client went away, or the connection was cut: nothing is left to answer.
            return false;
        }
        finally
        {
            exchange.Release();
        }
        return false;
    }

    /// <summary>
    /// Whether this request is for this loop: origin-form, no upgrade or expectation, and a path
    /// that routes as it is (no percent-encoding, no dot segment, ASCII only).
    /// </summary>
    internal static bool ServedHere(RequestHead head, ReadOnlySpan<byte> bytes)
    {
        if (head.Form != TargetForm.Origin || head.Upgrade || head.Expect)
        {
            return false;
        }
        var target = head.Target.Of(bytes);
        var query = target.IndexOf((byte)'?');
        var path = query < 0 ? target : target[..query];
        if (path.IsEmpty || path[0] != '/' || path.ContainsAnyExcept(PlainPath))
        {
            return false;
        }
        if (query >= 0 && target[query..].IndexOfAnyInRange((byte)0x80, (byte)0xff) >= 0)
        {
            return false;
        }
        // Dot segments: "/." or "/.." followed by "/" or the end.
        for (var i = path.IndexOf("/."u8); i >= 0;)
        {
            var rest = path[(i + 2)..];
            if (rest.IsEmpty || rest[0] == '/' || (rest[0] == '.' && (rest.Length == 1 || rest[1] == '/')))
            {
                return false;
            }
            var next = rest.IndexOf("/."u8);
            i = next < 0 ? -1 : i + 2 + next;
        }
        return true;
    }

    /// <summary>
    /// Answers a head that was refused (or timed out) with its code and a sentence, counted and
    /// logged once a second per kind, then closes: the connection's framing is not to be trusted.
    /// </summary>
    private async Task RefuseAsync(ConnectionContext connection, ListenerConfig config, ReadTimer timer, Refusal refusal)
    {
        var code = ErrorCodes.Code(refusal.Error);
        protocolErrors.Report(config.Name, code, $"refused a request: {refusal.Message}");
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await connection.Transport.Output.WriteAsync(ErrorResponder.ConnectionRefusal(refusal.Error, $"Refused: {refusal.Message}.", retryAfter: false), timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            return;
        }
        await LingerAsync(connection.Transport.Input, timer, DrainTime).ConfigureAwait(false);
    }

    /// <summary>
    /// Before closing after an answer: read away what the client still sends, for at most
    /// <paramref name="most"/> and until it has been quiet a moment. Closing on unread bytes
    /// makes the kernel send a reset, which can destroy the answer before the client reads it.
    /// </summary>
    private static async Task LingerAsync(PipeReader input, ReadTimer timer, TimeSpan most)
    {
        var until = DateTime.UtcNow + most;
        var dropped = 0L;
        try
        {
            while (true)
            {
                if (input.TryRead(out var ready))
                {
                    dropped += ready.Buffer.Length;
                    input.AdvanceTo(ready.Buffer.End);
                    if (ready.IsCompleted || ready.IsCanceled)
                    {
                        return;
                    }
                }
                var left = until - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || dropped > DrainLimit)
                {
                    return;
                }
                timer.Arm(left < LingerQuiet ? left : LingerQuiet);
                var result = await input.ReadAsync().ConfigureAwait(false);
                timer.Disarm();
                dropped += result.Buffer.Length;
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception e) when (e is IOException or ConnectionResetException or InvalidOperationException or OperationCanceledException)
        {
            // The client is gone: nothing to linger for.
        }
    }

    /// <summary>
    /// One timer per connection that ends a read waiting too long (keep-alive, request head,
    /// linger) by cancelling the read: the read then returns cancelled rather than throwing.
    /// </summary>
    private sealed class ReadTimer : IDisposable
    {
        private readonly PipeReader _input;
        private readonly ITimer _timer;
        private int _armed;

        public ReadTimer(PipeReader input)
        {
            _input = input;
            _timer = TimeProvider.System.CreateTimer(static s => ((ReadTimer)s!).Fire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        public void Arm(TimeSpan after)
        {
            Volatile.Write(ref _armed, 1);
            _timer.Change(after, Timeout.InfiniteTimeSpan);
        }

        /// <summary>Stops the timer; false when it fired (or a close was asked for) first.</summary>
        public bool Disarm()
        {
            var armed = Interlocked.Exchange(ref _armed, 0) == 1;
            _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return armed;
        }

        /// <summary>Ends a read armed now at once (a close was asked for); a read not armed goes on.</summary>
        public void FireNow() => Fire();

        private void Fire()
        {
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                _input.CancelPendingRead();
            }
        }

        public void Dispose() => _timer.Dispose();
    }
}

/// <summary>The pipeline's entry for one request, whichever front end read it.</summary>
internal delegate ValueTask RunRequest(ProxyExchange exchange);
