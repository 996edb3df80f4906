using System.Diagnostics;

namespace Fulcrum.Forwarding;

/// <summary>
/// The message sent upstream, carrying what the connect callback needs (the route's connect
/// timeout) and gives back (how long the connect took). A subclass rather than
/// <see cref="HttpRequestMessage.Options"/> so that no dictionary is allocated per request.
/// </summary>
internal sealed class UpstreamRequest : HttpRequestMessage
{
    public UpstreamRequest(HttpMethod method, Uri uri)
        : base(method, uri)
    {
    }

    public TimeSpan ConnectTimeout { get; init; }

    /// <summary>TLS to the backend (the pool's <c>tls</c>); the connect callback does the handshake, so the URI stays http://.</summary>
    public UpstreamTls? Tls { get; init; }

    /// <summary>True while the connect callback is opening a connection for this request.</summary>
    public bool Connecting { get; set; }

    /// <summary>Stopwatch ticks spent connecting, when this request opened a new connection; else 0.</summary>
    public long ConnectTicks { get; set; }

    /// <summary>The Sec-WebSocket-Key Fulcrum made for an HTTP/2 WebSocket sent upstream as HTTP/1.1.</summary>
    public string? WebSocketKey { get; set; }

    public double ConnectMilliseconds => ConnectTicks == 0 ? -1 : Stopwatch.GetElapsedTime(0, ConnectTicks).TotalMilliseconds;
}
