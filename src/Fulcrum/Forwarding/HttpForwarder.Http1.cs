using System.Runtime.CompilerServices;
using Fulcrum.Forwarding.Http1;
using Fulcrum.Observability;
using Fulcrum.Routing;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Fulcrum.Forwarding;

/// <summary>
/// The HTTP/1.1 upstream path on Fulcrum's own connection pool (<see cref="Http1ConnectionPool"/>):
/// every request but upgrades (tunnels) and <c>Expect: 100-continue</c>, which stay on
/// SocketsHttpHandler. It keeps the other path's contract: the same timers and error codes, held
/// responses, replayed bodies, trailers, and a cut body never passed off as whole.
/// </summary>
internal sealed partial class HttpForwarder
{
    /// <summary>
    /// Off when <c>FULCRUM_UPSTREAM_CLIENT=sockets</c>: every request then goes through
    /// SocketsHttpHandler, to compare the two in one bench run or to rule the pool out.
    /// </summary>
    internal static readonly bool UsePool = !string.Equals(Environment.GetEnvironmentVariable("FULCRUM_UPSTREAM_CLIENT"), "sockets", StringComparison.OrdinalIgnoreCase);

    private static bool ForPool(ProxyExchange exchange, in AttemptOptions options) =>
        UsePool && !options.Upgrade.Any && exchange.Header("Expect").Count == 0;

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<ForwardResult> SendPooledAsync(ProxyExchange incoming, RouteState route, BackendState backend, RequestRecord record, AttemptOptions options)
    {
        var timeouts = route.Timeouts;
        var timer = incoming.NewTimer(timeouts.Idle);
        // A body goes upstream when the client sent one (Content-Length or chunked), and an
        // explicit "Content-Length: 0" is kept rather than dropped.
        var body = incoming.CanHaveBody || incoming.ContentLength == 0 ? new Http1RequestBody(incoming, timer, options.ResponseTimeout, options.Replay) : null;
        if (body is null)
        {
            timer.AwaitResponse(options.ResponseTimeout);
        }
        var headRequest = HttpMethods.IsHead(incoming.Method);
        var poolConfig = route.Pool.Config;
        Http1Exchange exchange;
        var fresh = false;
        while (true)
        {
            exchange = incoming.TakeUpstream()?.Reset(timer) ?? new Http1Exchange(timer);
            try
            {
                await exchange.OpenAsync(backend.Connections, poolConfig.Limits.MaxConnections, timeouts.Connect, fresh, route.Pool.Tls).ConfigureAwait(false);
                await exchange.SendAsync(incoming, poolConfig, backend, record, body).ConfigureAwait(false);
                await exchange.ReadHeadAsync(headRequest, poolConfig.Limits.UpstreamResponseHeaders).ConfigureAwait(false);
                break;
            }
            catch (Exception e) when (!fresh && body is null && exchange.OnReusedConnection && exchange.ResponseBytes == 0
                && !timer.Token.IsCancellationRequested && e is not HttpRequestException { HttpRequestError: HttpRequestError.InvalidResponse or HttpRequestError.ConfigurationLimitExceeded })
            {
                // A kept-alive connection the backend closed as the request went out (its own
                // keep-alive timeout racing ours): nothing was answered, so the request goes
                // again, once, on a new connection. SocketsHttpHandler does the same.
                exchange.Dispose();
                fresh = true;
            }
            catch (Exception e)
            {
                // The body may still be waiting on the client: it stops before anything else may
                // read the client's body (a retry that replays it).
                await exchange.StopSendingAsync().ConfigureAwait(false);
                record.ConnectMs = exchange.ConnectMilliseconds;
                record.BytesIn += body?.BytesSent ?? 0;
                var (error, detail) = UpstreamErrors.BeforeResponse(e, timer, body?.Started ?? false, body?.ClientError, exchange.Connecting);
                exchange.Dispose();
                timer.Dispose();
                return new ForwardResult(error, detail, 0, body?.Started ?? false, false);
            }
        }

        record.ConnectMs = exchange.ConnectMilliseconds;
        record.TimeToFirstByteMs = record.ElapsedMs;
        var sentAtHead = body?.BytesSent ?? 0;
        record.BytesIn += sentAtHead;
        var bodyStarted = body?.Started ?? false;
        var status = exchange.Response.Status;
        if (status == StatusCodes.Status101SwitchingProtocols)
        {
            // Switching protocols on a request that asked for no switch: see the other path.
            exchange.Dispose();
            timer.Dispose();
            return new ForwardResult(FulcrumError.UpstreamProtocolError, "the backend answered 101 Switching Protocols to a request that asked for no upgrade", status, bodyStarted, false);
        }
        // Held only when a retry could send the whole body again, and this one was sent whole.
        if (options.HoldStatuses is { } hold && hold.Contains(status) && exchange.BodySent && !(bodyStarted && options.Replay is null or { Overflowed: true }))
        {
            return new ForwardResult(FulcrumError.None, null, status, bodyStarted, false)
            {
                Held = new HeldResponse(exchange, timer),
            };
        }
        ForwardResult relayed;
        using (timer)
        {
            try
            {
                timer.ResponseReceived();
                relayed = await RelayPooledAsync(incoming, exchange, timer, record).ConfigureAwait(false);
                if (relayed.Succeeded && !exchange.BodySent)
                {
                    // The backend answered before it had the whole body: the client is still sending
                    // it, and gets to finish (under the idle timeout) rather than have its upload cut.
                    await exchange.FinishSendingAsync().ConfigureAwait(false);
                }
            }
            finally
            {
                exchange.Dispose();
            }
            // Bytes the body sent while the response was relayed (an early answer) count too.
            record.BytesIn += (body?.BytesSent ?? 0) - sentAtHead;
        }
        if (exchange.BodySent)
        {
            // Nothing refers to it any more (a body still sending would): the next request on
            // this client connection may use it.
            incoming.KeepUpstream(exchange, timer);
        }
        return relayed with { RequestBodyStarted = bodyStarted };
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<ForwardResult> RelayPooledAsync(ProxyExchange outgoing, Http1Exchange exchange, ForwardingTimer timer, RequestRecord record)
    {
        var response = exchange.Response;
        var status = response.Status;
        outgoing.Status = status;
        var chunked = response.Framing == BodyFraming.Chunked;
        var connection = response.Connection;
        foreach (var (name, value) in response.Headers)
        {
            // A chunked response's own Content-Length is meaningless (RFC 9112 §6.3): dropped,
            // or the client would be told a length the body does not have.
            if (HeaderRules.IsHopByHop(name, connection) || (chunked && string.Equals(name, "Content-Length", StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }
            try
            {
                outgoing.AddHeader(name, value);
            }
            catch (InvalidOperationException)
            {
                outgoing.ClearResponse();
                return new ForwardResult(FulcrumError.UpstreamProtocolError, $"the backend sent an invalid response header: {name}: {value}", status, false, false);
            }
        }
        outgoing.SetRequestIdHeader(record);
        if (outgoing.Hsts is { } hsts)
        {
            outgoing.SetHeader(HeaderRules.HstsHeader, hsts);
        }
        if (response.Framing is BodyFraming.Chunked or BodyFraming.UntilClose)
        {
            // Streaming: send the headers now rather than with the first chunk of body, so a
            // client of a long poll or an event stream sees them at once.
            try
            {
                await outgoing.StartAsync(timer.Token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                var (error, detail) = UpstreamErrors.DuringBody(e, timer, clientSide: true);
                return new ForwardResult(error, detail, status, false, outgoing.HasStarted);
            }
        }

        if (await CopyBodyAsync(new ExchangeBody(exchange), outgoing, timer, record, status).ConfigureAwait(false) is { } failed)
        {
            return failed;
        }

        if (response.Trailers.Count > 0 && outgoing.SupportsTrailers)
        {
            foreach (var (name, value) in response.Trailers)
            {
                if (!HeaderRules.IsHopByHop(name, connection))
                {
                    outgoing.AddTrailer(name, value);
                }
            }
        }
        return ForwardResult.Success(status);
    }
}
