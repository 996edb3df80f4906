using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Primitives;

namespace Fulcrum.Forwarding;

/// <summary>
/// One proxied request and its response, as the pipeline sees them, whichever front end read the
/// request: Kestrel's (<c>KestrelExchange</c>, over an <c>HttpContext</c>: HTTP/2, h2c, and what
/// Fulcrum's own front end hands over) or Fulcrum's HTTP/1.1 loop (<c>FrontendExchange</c>, over
/// the connection's pipes). Routing, balancing, retries, errors, the access log, metrics and
/// tracing are written once against this shape.
/// </summary>
internal abstract class ProxyExchange : IRequestHeaders
{
    // ---- The request ----

    public abstract string Method { get; }

    /// <summary><c>HTTP/1.1</c>, <c>HTTP/1.0</c> or <c>HTTP/2</c>.</summary>
    public abstract string Protocol { get; }

    public abstract string Scheme { get; }

    /// <summary>The host routed on: the Host header (or :authority) without its port; empty when there is none.</summary>
    public abstract string RouteHost { get; }

    /// <summary>The Host header (or :authority) as received, port included; null when there is none.</summary>
    public abstract string? Authority { get; }

    /// <summary>The path routed on: decoded, dot segments removed.</summary>
    public abstract string Path { get; }

    /// <summary>The path and query sent upstream: the routed path encoded again, and the query as received.</summary>
    public abstract string UpstreamTarget { get; }

    public abstract IPAddress? RemoteIp { get; }

    /// <summary>The listener's configuration as the request arrived (set by the front end); null when built without one.</summary>
    internal Configuration.ListenerConfig? Listener { get; set; }

    /// <summary>The Strict-Transport-Security value to add to this request's response (its route's, on TLS only), else null.</summary>
    internal string? Hsts { get; set; }

    /// <summary>What the client's TLS connection negotiated; null on a cleartext listener.</summary>
    public abstract Tls.TlsConnection? Tls { get; }

    /// <summary>The values of one request header (none: empty).</summary>
    public abstract StringValues Header(string name);

    /// <summary>Whether the request carries a body (Content-Length, zero included, or chunked).</summary>
    public abstract bool CanHaveBody { get; }

    public abstract long? ContentLength { get; }

    /// <summary>The request body, decoded.</summary>
    public abstract PipeReader BodyReader { get; }

    /// <summary>Fires when the client goes away.</summary>
    public abstract CancellationToken Aborted { get; }

    /// <summary>Cuts the client's connection: a response already begun is then seen to be incomplete.</summary>
    public abstract void Abort();

    /// <summary>
    /// Writes the client's end-to-end headers into the head sent upstream: hop-by-hop ones dropped
    /// ("TE: trailers" kept), and the ones the head writes itself (<see cref="Http1.Http1RequestHead"/>) left out.
    /// </summary>
    internal abstract void WriteHeaders(ref Http1.HeadWriter writer);

    /// <summary>The record of a new request on this exchange: a new one, or one the front end keeps per connection.</summary>
    /// <param name="requestId">The client's id; null: a new one.</param>
    internal virtual Observability.RequestRecord NewRecord(string? requestId) => new(requestId);

    /// <summary>Sets the response's X-Request-Id to the request's id.</summary>
    internal virtual void SetRequestIdHeader(Observability.RequestRecord record) => SetHeader(HeaderRules.RequestIdHeader, record.RequestId);

    private Http1.Http1Exchange? _spareUpstream;

    /// <summary>An upstream exchange a previous request on this connection finished with, if any.</summary>
    internal Http1.Http1Exchange? TakeUpstream()
    {
        var spare = _spareUpstream;
        _spareUpstream = null;
        return spare;
    }

    private ForwardingTimer? _spareTimer;

    /// <summary>A request timer a previous request on this connection finished with, made new; else a new one.</summary>
    internal ForwardingTimer NewTimer(TimeSpan idle)
    {
        var spare = _spareTimer;
        _spareTimer = null;
        return spare?.Reset(Aborted, idle) ?? new ForwardingTimer(Aborted, idle);
    }

    /// <summary>
    /// Keeps an upstream exchange and its timer that are done (both disposed, the body sent whole,
    /// so nothing refers to either) for the next request on this connection.
    /// </summary>
    internal void KeepUpstream(Http1.Http1Exchange exchange, ForwardingTimer timer)
    {
        _spareUpstream = exchange;
        _spareTimer = timer;
    }

    // ---- The response ----

    /// <summary>True once the response's head went to the client: its status and headers can no longer change.</summary>
    public abstract bool HasStarted { get; }

    public abstract int Status { get; set; }

    /// <summary>Adds a response header; throws <see cref="InvalidOperationException"/> for a name or value that may not be sent.</summary>
    public abstract void AddHeader(string name, string value);

    /// <summary>Sets a response header, replacing any value it had.</summary>
    public abstract void SetHeader(string name, string value);

    /// <summary>Forgets the status and headers set so far (before the response started).</summary>
    public abstract void ClearResponse();

    /// <summary>Puts the response's head on the wire now (a stream's headers, before any body).</summary>
    public abstract ValueTask StartAsync(CancellationToken cancellationToken);

    /// <summary>Room for body bytes; <see cref="AdvanceBody"/> says how many were written.</summary>
    public abstract Memory<byte> GetBodyMemory();

    public abstract void AdvanceBody(int count);

    /// <summary>Sends the body bytes advanced so far. Completed or cancelled: the client stopped reading.</summary>
    public abstract ValueTask<FlushResult> FlushBodyAsync(CancellationToken cancellationToken);

    /// <summary>Writes a whole body Fulcrum made itself (an error's).</summary>
    public abstract ValueTask WriteBodyAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken);

    /// <summary>Whether the client's protocol can carry trailers after this response's body.</summary>
    public abstract bool SupportsTrailers { get; }

    public abstract void AddTrailer(string name, string value);

    /// <summary>
    /// After a refusal that closes the connection: whatever lets the answer reach the client
    /// before the close (Kestrel: read away the rest of the body for a moment; Fulcrum's front end
    /// does that itself when it closes).
    /// </summary>
    public abstract ValueTask LingerAsync();
}

/// <summary>A request's headers, looked up by name: what route header rules need.</summary>
public interface IRequestHeaders
{
    /// <summary>The values of one header (none: empty).</summary>
    StringValues Header(string name);
}

/// <summary>A header dictionary (a request the admin API explains) as <see cref="IRequestHeaders"/>.</summary>
public sealed class HeaderDictionaryLookup(Microsoft.AspNetCore.Http.IHeaderDictionary headers) : IRequestHeaders
{
    public StringValues Header(string name) => headers[name];
}
