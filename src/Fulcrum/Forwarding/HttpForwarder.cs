using System.Diagnostics;
using System.Net;
using System.Runtime.CompilerServices;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Fulcrum.Routing;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Fulcrum.Forwarding;

/// <summary>
/// Sends one client request to one backend and relays the response, streaming both bodies.
/// It never throws for an expected failure: it returns a <see cref="ForwardResult"/>.
/// </summary>
/// <remarks>
/// The steps of one attempt:
/// 1. Build the upstream message: method, the routed path re-encoded, headers minus hop-by-hop
///    ones, Host per the pool's mode, X-Forwarded-*, X-Request-Id, and the body as a stream.
/// 2. Send it through the pool's invoker. The connect timeout lives in the connect callback; the
///    idle timeout covers the request body; the response timeout runs from the end of the request
///    to the response headers.
/// 3. On headers: copy status and headers. A streaming response (no Content-Length) has its
///    headers flushed at once, so server-sent events and long polls are seen immediately.
/// 4. Relay the body chunk by chunk into Kestrel's pipe, flushing each chunk as it arrives.
/// 5. Copy trailers when the client's protocol can carry them.
/// A failure before the response started is returned for the pipeline to answer or try another
/// backend; a failure after it started aborts the client's connection, so a cut body is never
/// mistaken for a complete one.
/// </remarks>
internal sealed partial class HttpForwarder
{
    private static readonly UriCreationOptions RawUri = new() { DangerousDisablePathAndQueryCanonicalization = true };

    private readonly TunnelRegistry _tunnels;
    private readonly TimeProvider _time;

    /// <param name="tunnels">Where open tunnels are registered, so they can be counted, timed out and closed.</param>
    /// <param name="time">The clock tunnels are timed on.</param>
    public HttpForwarder(TunnelRegistry tunnels, TimeProvider time)
    {
        _tunnels = tunnels;
        _time = time;
    }

    public ValueTask<ForwardResult> SendAsync(ProxyExchange exchange, RouteState route, BackendState backend, RequestRecord record, AttemptOptions options) =>
        ForPool(exchange, options) ? SendPooledAsync(exchange, route, backend, record, options)
        : exchange is KestrelExchange kestrel ? SendThroughHandlerAsync(kestrel, route, backend, record, options)
        : throw new InvalidOperationException("an upgrade or an Expect reached the pipeline from Fulcrum's front end, which hands both to Kestrel");

    /// <summary>
    /// The SocketsHttpHandler path: upgrades, <c>Expect: 100-continue</c>, and everything when the
    /// pool is off. Only requests Kestrel read take it: Fulcrum's front end hands these to Kestrel.
    /// </summary>
    private async ValueTask<ForwardResult> SendThroughHandlerAsync(KestrelExchange exchange, RouteState route, BackendState backend, RequestRecord record, AttemptOptions options)
    {
        var context = exchange.Context;
        var timeouts = route.Timeouts;
        var timer = new ForwardingTimer(context.RequestAborted, timeouts.Idle);
        var request = CreateRequest(context, route.Pool.Config, backend, timeouts, options, timer, record, route.Pool.Tls);
        var content = request.Content as StreamingRequestContent;
        if (content is null)
        {
            timer.AwaitResponse(options.ResponseTimeout);
        }

        HttpResponseMessage response;
        try
        {
            response = await route.Pool.Invoker.SendAsync(request, timer.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            record.ConnectMs = request.ConnectMilliseconds;
            record.BytesIn += content?.BytesSent ?? 0;
            var connecting = request.Connecting;
            var (error, detail) = UpstreamErrors.BeforeResponse(e, timer, content?.Started ?? false, content?.ClientError, connecting);
            // Timed out by the response timer while connecting: the connect callback did not fail
            // this request itself, so it may have gone out on another pooled connection.
            var maybeSent = error == FulcrumError.ConnectTimeout && timer.TimedOut && connecting;
            request.Dispose();
            timer.Dispose();
            return new ForwardResult(error, detail, 0, content?.Started ?? false, false) { MaybeSent = maybeSent };
        }

        record.ConnectMs = request.ConnectMilliseconds;
        record.TimeToFirstByteMs = record.ElapsedMs;
        record.BytesIn += content?.BytesSent ?? 0;
        var status = (int)response.StatusCode;
        if (status == StatusCodes.Status101SwitchingProtocols && !options.Upgrade.Any)
        {
            // Switching protocols on a request that asked for no switch (an h2c upgrade Fulcrum
            // stripped, say): relaying it would tell the client, or a proxy before it, that the
            // connection now carries another protocol while Fulcrum still frames it as HTTP.
            Dispose(request, response, timer);
            return new ForwardResult(FulcrumError.UpstreamProtocolError, "the backend answered 101 Switching Protocols to a request that asked for no upgrade", status, content?.Started ?? false, false);
        }
        if (options.Upgrade.Any)
        {
            var upgraded = await UpgradeAsync(context, route, backend, record, options.Upgrade, request, response, timer).ConfigureAwait(false);
            if (upgraded is { } done)
            {
                return done;
            }
        }
        // Held only when a retry could send the whole body again.
        if (options.HoldStatuses is { } hold && hold.Contains(status) && !(content is { Started: true } && options.Replay is null or { Overflowed: true }))
        {
            // A retryable status: hold it back; the pipeline retries, or relays it after all.
            return new ForwardResult(FulcrumError.None, null, status, content?.Started ?? false, false)
            {
                Held = new HeldResponse(request, response, timer),
            };
        }
        using (timer)
        using (request)
        using (response)
        {
            timer.ResponseReceived();
            var result = await RelayResponseAsync(exchange, response, timer, record).ConfigureAwait(false);
            return result with { RequestBodyStarted = content?.Started ?? false };
        }
    }

    /// <summary>Relays a response an attempt held back, when it turned out not to be retried.</summary>
    public async ValueTask<ForwardResult> RelayHeldAsync(ProxyExchange context, HeldResponse held, RequestRecord record)
    {
        using (held)
        {
            held.Timer.ResponseReceived();
            return held.Exchange is { } exchange
                ? await RelayPooledAsync(context, exchange, held.Timer, record).ConfigureAwait(false)
                : await RelayResponseAsync((KestrelExchange)context, held.Response!, held.Timer, record).ConfigureAwait(false);
        }
    }

    private static UpstreamRequest CreateRequest(HttpContext context, PoolConfig pool, BackendState backend, ResolvedTimeouts timeouts, AttemptOptions options, ForwardingTimer timer, RequestRecord record, UpstreamTls? tls)
    {
        var incoming = context.Request;
        var uri = new Uri(backend.BaseUri + RequestTarget.PathAndQuery(incoming, context.Features.Get<IHttpRequestFeature>()?.RawTarget), in RawUri);
        var upgrade = options.Upgrade;
        // An extended CONNECT goes upstream as the HTTP/1.1 WebSocket handshake: a GET.
        var method = upgrade.Kind == UpgradeKind.ExtendedConnect ? HttpMethod.Get : HttpMethod.Parse(incoming.Method);
        var request = new UpstreamRequest(method, uri)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
            ConnectTimeout = timeouts.Connect,
            Tls = tls,
        };

        // A body goes upstream when the client sent one (Content-Length or chunked), and an
        // explicit "Content-Length: 0" is kept rather than dropped.
        var canHaveBody = context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? incoming.ContentLength > 0;
        // An upgrade's bytes after the head are the tunnel's, never a body.
        if (!upgrade.Any && (canHaveBody || incoming.ContentLength == 0))
        {
            request.Content = new StreamingRequestContent(incoming, timer, options.ResponseTimeout, options.Replay);
        }

        HeaderRules.CopyRequestHeaders(incoming, request);
        var headers = request.Headers;
        if (upgrade.Any)
        {
            // Connection and Upgrade are hop-by-hop and were dropped; this hop asks again.
            headers.TryAddWithoutValidation("Connection", "Upgrade");
            headers.TryAddWithoutValidation("Upgrade", upgrade.Protocols);
            if (upgrade.Kind == UpgradeKind.ExtendedConnect)
            {
                // RFC 8441 has no key; the HTTP/1.1 handshake needs one, checked in the answer.
                headers.Remove("Sec-WebSocket-Key");
                request.WebSocketKey = WebSocketFrames.NewKey();
                headers.TryAddWithoutValidation("Sec-WebSocket-Key", request.WebSocketKey);
                if (!headers.Contains("Sec-WebSocket-Version"))
                {
                    headers.TryAddWithoutValidation("Sec-WebSocket-Version", "13");
                }
            }
        }
        if (pool.HostHeader == HostHeaderMode.Preserve && incoming.Host.HasValue)
        {
            // Without validation: Kestrel accepts host characters (!$&'()~) that the typed
            // Host setter would refuse with an exception.
            headers.TryAddWithoutValidation("Host", incoming.Host.Value);
        }

        var client = context.Connection.RemoteIpAddress;
        if (client is not null)
        {
            if (client.IsIPv4MappedToIPv6)
            {
                client = client.MapToIPv4();
            }
            var prior = incoming.Headers["X-Forwarded-For"];
            headers.Remove("X-Forwarded-For");
            var clientText = client.ToString();
            headers.TryAddWithoutValidation("X-Forwarded-For", prior.Count == 0 ? clientText : string.Join(", ", prior.ToArray()) + ", " + clientText);
        }
        headers.Remove("X-Forwarded-Proto");
        headers.TryAddWithoutValidation("X-Forwarded-Proto", incoming.Scheme);
        headers.Remove("X-Forwarded-Host");
        if (incoming.Host.HasValue)
        {
            headers.TryAddWithoutValidation("X-Forwarded-Host", incoming.Host.Value);
        }
        headers.Remove(HeaderRules.ClientCertSubjectHeader);
        headers.Remove(HeaderRules.ClientCertSha256Header);
        if (context.Features.Get<Tls.TlsConnection>() is { ForwardClientCert: true, ClientSubject: { } subject, ClientSha256: { } sha256 })
        {
            headers.TryAddWithoutValidation(HeaderRules.ClientCertSubjectHeader, HeaderRules.ClientCertSubject(subject));
            headers.TryAddWithoutValidation(HeaderRules.ClientCertSha256Header, sha256);
        }
        // One id everywhere: the client's when it was usable, else Fulcrum's (RequestIds).
        headers.Remove(HeaderRules.RequestIdHeader);
        headers.TryAddWithoutValidation(HeaderRules.RequestIdHeader, record.RequestId);
        // W3C trace context: continue the client's trace through Fulcrum's span, or start one.
        headers.Remove("traceparent");
        headers.Remove("tracestate");
        headers.TryAddWithoutValidation("traceparent", record.TraceParent);
        if (record.TraceState is { Length: > 0 } state)
        {
            headers.TryAddWithoutValidation("tracestate", state);
        }
        return request;
    }

    /// <summary>
    /// The answer to an upgrade request. On <c>101 Switching Protocols</c> the client is switched
    /// too and the tunnel runs here until it ends; the result is then final. Any other answer is
    /// relayed as a response (null), except a 2xx to an extended CONNECT, which would tell an HTTP/2
    /// client its WebSocket is open when the backend never switched.
    /// </summary>
    private async ValueTask<ForwardResult?> UpgradeAsync(HttpContext context, RouteState route, BackendState backend, RequestRecord record, UpgradeRequest upgrade, UpstreamRequest request, HttpResponseMessage response, ForwardingTimer timer)
    {
        var status = (int)response.StatusCode;
        var extended = upgrade.Kind == UpgradeKind.ExtendedConnect;
        if (status != StatusCodes.Status101SwitchingProtocols)
        {
            if (extended && status is >= 200 and < 300)
            {
                Dispose(request, response, timer);
                return new ForwardResult(FulcrumError.UpstreamProtocolError, $"the backend answered the WebSocket handshake with {status} instead of 101 Switching Protocols", status, false, false);
            }
            return null;
        }
        if (extended && !(response.Headers.NonValidated.TryGetValues("Sec-WebSocket-Accept", out var accept)
            && accept.Count == 1 && string.Equals(accept.ToString(), WebSocketFrames.AcceptFor(request.WebSocketKey!), StringComparison.Ordinal)))
        {
            Dispose(request, response, timer);
            return new ForwardResult(FulcrumError.UpstreamProtocolError, "the backend switched protocols with a wrong or missing Sec-WebSocket-Accept", status, false, false);
        }

        // The protocol switched to must be one the client offered (never h2c, which Fulcrum
        // removed from the offer); whether it is a WebSocket follows from it, not from the offer.
        var webSocket = extended;
        if (!extended)
        {
            var chosen = response.Headers.NonValidated.TryGetValues("Upgrade", out var chosenValues) ? chosenValues.ToString().Trim() : "";
            if (!upgrade.Offers(chosen))
            {
                Dispose(request, response, timer);
                return new ForwardResult(FulcrumError.UpstreamProtocolError, $"the backend switched to '{chosen}', which the client did not offer ({upgrade.Protocols})", status, false, false);
            }
            webSocket = string.Equals(chosen, "websocket", StringComparison.OrdinalIgnoreCase);
        }

        var outgoing = context.Response;
        var badHeader = HeaderRules.CopyResponseHeaders(response.Headers, outgoing.Headers, HeaderRules.ConnectionOf(response), dropContentLength: true);
        if (badHeader is not null)
        {
            outgoing.Clear();
            Dispose(request, response, timer);
            return new ForwardResult(FulcrumError.UpstreamProtocolError, $"the backend sent an invalid response header: {badHeader}", status, false, false);
        }
        outgoing.Headers[HeaderRules.RequestIdHeader] = record.RequestId;
        if (extended)
        {
            // HTTP/2 says "switched" with a 200 and no handshake headers (RFC 8441 §5).
            outgoing.Headers.Remove("Sec-WebSocket-Accept");
            outgoing.StatusCode = StatusCodes.Status200OK;
        }
        else if (response.Headers.NonValidated.TryGetValues("Upgrade", out var protocol))
        {
            outgoing.Headers.Upgrade = protocol.ToString();
        }

        Stream upstream;
        Stream client;
        try
        {
            upstream = await response.Content.ReadAsStreamAsync(timer.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Dispose(request, response, timer);
            var (error, detail) = UpstreamErrors.DuringBody(e, timer, clientSide: false);
            return new ForwardResult(error, detail, status, false, false);
        }
        try
        {
            client = extended
                ? await context.Features.Get<IHttpExtendedConnectFeature>()!.AcceptAsync().ConfigureAwait(false)
                : await context.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or OperationCanceledException)
        {
            await upstream.DisposeAsync().ConfigureAwait(false);
            Dispose(request, response, timer);
            return new ForwardResult(FulcrumError.ClientAborted, $"the client went away as the tunnel opened ({e.Message})", status, false, true);
        }
        // The request's timers are done: from here the tunnel's own idle and lifetime apply.
        timer.Dispose();
        record.Tunnelled = true;
        var timeouts = route.Timeouts;
        var tunnel = new Tunnel(backend, route.Pool, client, upstream, webSocket, timeouts.TunnelIdle, timeouts.TunnelMax, _time, context.Abort);
        _tunnels.Add(tunnel);
        // An open tunnel stays in flight on its backend (that is what spreads long-lived sockets)
        // but is not a request the retry budget is a share of: thousands of idle sockets would
        // otherwise allow thousands of concurrent retries. The pipeline's own leave balances this.
        route.Pool.LeaveRequest();
        try
        {
            record.TunnelClosedBy = await tunnel.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            route.Pool.EnterRequest();
            _tunnels.Remove(tunnel);
            record.BytesIn += tunnel.BytesFromClient;
            record.BytesOut += tunnel.BytesToClient;
            request.Dispose();
            response.Dispose();
        }
        return ForwardResult.Success(status);
    }

    private static void Dispose(UpstreamRequest request, HttpResponseMessage response, ForwardingTimer timer)
    {
        response.Dispose();
        request.Dispose();
        timer.Dispose();
    }

    private static async ValueTask<ForwardResult> RelayResponseAsync(KestrelExchange exchange, HttpResponseMessage response, ForwardingTimer timer, RequestRecord record)
    {
        var status = (int)response.StatusCode;
        var outgoing = exchange.Context.Response;
        outgoing.StatusCode = status;
        var connection = HeaderRules.ConnectionOf(response);
        // A chunked response's own Content-Length is meaningless (RFC 9112 §6.3): drop it, or the
        // client would be told a length the body does not have.
        var chunked = response.Headers.TransferEncodingChunked == true;
        var badHeader = HeaderRules.CopyResponseHeaders(response.Headers, outgoing.Headers, connection, dropContentLength: chunked)
            ?? HeaderRules.CopyResponseHeaders(response.Content.Headers, outgoing.Headers, connection, dropContentLength: chunked);
        if (badHeader is not null)
        {
            outgoing.Clear();
            return new ForwardResult(FulcrumError.UpstreamProtocolError, $"the backend sent an invalid response header: {badHeader}", status, false, false);
        }
        outgoing.Headers[HeaderRules.RequestIdHeader] = record.RequestId;
        if (exchange.Hsts is { } hsts)
        {
            outgoing.Headers[HeaderRules.HstsHeader] = hsts;
        }
        var length = chunked ? null : response.Content.Headers.ContentLength;
        if (length is null)
        {
            // Streaming: send the headers now rather than with the first chunk of body, so a
            // client of a long poll or an event stream sees them at once. Kestrel's StartAsync
            // only queues chunked headers; the flush puts them on the wire.
            try
            {
                await outgoing.StartAsync(timer.Token).ConfigureAwait(false);
                await outgoing.BodyWriter.FlushAsync(timer.Token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                var (error, detail) = UpstreamErrors.DuringBody(e, timer, clientSide: true);
                return new ForwardResult(error, detail, status, false, outgoing.HasStarted);
            }
        }

        Stream upstream;
        try
        {
            upstream = await response.Content.ReadAsStreamAsync(timer.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            var (error, detail) = UpstreamErrors.DuringBody(e, timer, clientSide: false);
            return new ForwardResult(error, detail, status, false, outgoing.HasStarted);
        }

        await using (upstream.ConfigureAwait(false))
        {
            if (await CopyBodyAsync(new StreamBody(upstream), exchange, timer, record, status).ConfigureAwait(false) is { } failed)
            {
                return failed;
            }
        }

        if (response.TrailingHeaders.NonValidated.Count > 0 && outgoing.SupportsTrailers())
        {
            foreach (var trailer in response.TrailingHeaders.NonValidated)
            {
                outgoing.AppendTrailer(trailer.Key, new Microsoft.Extensions.Primitives.StringValues([.. trailer.Value]));
            }
        }
        return ForwardResult.Success(status);
    }

    /// <summary>A response body as the relay reads it: SocketsHttpHandler's stream, or a pooled exchange.</summary>
    private interface IUpstreamBody
    {
        /// <summary>True when the body is known to have ended without reading again.</summary>
        bool Ended { get; }

        ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken);
    }

    private readonly struct StreamBody(Stream stream) : IUpstreamBody
    {
        public bool Ended => false;

        public ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken) => stream.ReadAsync(destination, cancellationToken);
    }

    private readonly struct ExchangeBody(Http1.Http1Exchange exchange) : IUpstreamBody
    {
        public bool Ended => exchange.BodyDone;

        // The exchange needs no token: the timer closes its connection when it fires.
        public ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken) => exchange.ReadBodyAsync(destination);
    }

    /// <summary>
    /// Relays the body into Kestrel's pipe chunk by chunk, flushing each as it arrives, with the
    /// idle timer re-armed on every move and aimed at whoever is awaited. Null when the body ended;
    /// else the failure, with the bytes relayed so far in the record.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<ForwardResult?> CopyBodyAsync<TBody>(TBody body, ProxyExchange outgoing, ForwardingTimer timer, RequestRecord record, int status)
        where TBody : IUpstreamBody
    {
        var written = 0L;
        while (true)
        {
            if (body.Ended)
            {
                // Asking the client's pipe for memory no byte will fill would leave its last block
                // allocated for as long as the connection then stays idle.
                record.BytesOut = written;
                return null;
            }
            var memory = outgoing.GetBodyMemory();
            int read;
            timer.Activity(WaitingOn.Backend);
            try
            {
                read = await body.ReadAsync(memory, timer.Token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                record.BytesOut = written;
                var (error, detail) = UpstreamErrors.DuringBody(e, timer, clientSide: false);
                return new ForwardResult(error, detail, status, false, outgoing.HasStarted || written > 0);
            }
            if (read == 0)
            {
                record.BytesOut = written;
                return null;
            }
            outgoing.AdvanceBody(read);
            written += read;
            timer.Activity(WaitingOn.Client);
            try
            {
                var flushed = await outgoing.FlushBodyAsync(timer.Token).ConfigureAwait(false);
                if (flushed.IsCanceled || flushed.IsCompleted)
                {
                    record.BytesOut = written;
                    return new ForwardResult(FulcrumError.ClientAborted, "the client stopped reading the response", status, false, true);
                }
            }
            catch (Exception e)
            {
                record.BytesOut = written;
                var (error, detail) = UpstreamErrors.DuringBody(e, timer, clientSide: true);
                return new ForwardResult(error, detail, status, false, true);
            }
        }
    }
}
