namespace Fulcrum.Configuration;

/// <summary>An address Fulcrum accepts client connections on.</summary>
public sealed record ListenerConfig(string Name, HostPort Address, string Protocol)
{
    /// <summary>The most client connections open at once; beyond, a connection is refused (503 too_many_connections on HTTP/1.1). Null: no limit.</summary>
    public int? MaxConnections { get; init; }

    /// <summary>What one request head may take, and how many requests one connection may carry.</summary>
    public ListenerLimits Limits { get; init; } = ListenerLimits.Default;

    /// <summary>How long a client may take to send a request head, and may keep an idle connection.</summary>
    public ListenerTimeouts Timeouts { get; init; } = ListenerTimeouts.Default;

    /// <summary>
    /// Who serves HTTP/1.1 on this listener: <see cref="FulcrumServer"/> (Fulcrum's own front end,
    /// the default) or <see cref="KestrelServer"/> (Kestrel's HTTP/1.1, to go back or to compare).
    /// Read per connection, so a reload switches the connections that open after it. An h2c
    /// listener is always Kestrel's HTTP/2.
    /// </summary>
    public string Server { get; init; } = FulcrumServer;

    /// <summary>TLS on this listener (<c>listeners[].tls</c>); null: cleartext.</summary>
    public ListenerTlsConfig? Tls { get; init; }

    /// <summary>Redirect every request to HTTPS (<c>listeners[].redirect_https</c>); null: serve them.</summary>
    public RedirectHttpsConfig? RedirectHttps { get; init; }

    /// <summary>The scheme its requests are forwarded as (X-Forwarded-Proto): <c>https</c> with TLS, else <c>http</c>.</summary>
    public string Scheme => Tls is null ? "http" : "https";

    public const string FulcrumServer = "fulcrum";

    public const string KestrelServer = "kestrel";

    /// <summary>HTTP/1.1 in cleartext.</summary>
    public const string HttpProtocol = "http";

    /// <summary>HTTP/2 in cleartext with prior knowledge (no upgrade), as gRPC clients inside a network use it.</summary>
    public const string H2cProtocol = "h2c";
}

/// <summary>
/// A listener's request limits: the request line (past it, 414), the header section's bytes and
/// lines (past them, 431), and the requests one connection may carry (null: no limit; the last
/// one is answered with <c>Connection: close</c>).
/// </summary>
public sealed record ListenerLimits(int RequestLine, int Headers, int HeaderCount, int? MaxRequestsPerConnection)
{
    public static ListenerLimits Default { get; } = new(8 * 1024, 32 * 1024, 100, null);
}

/// <summary>
/// A listener's client timeouts: the whole request head must arrive within
/// <see cref="RequestHeader"/> (else 408 and a close), and an idle keep-alive connection is closed
/// after <see cref="KeepAlive"/>.
/// </summary>
public sealed record ListenerTimeouts(TimeSpan RequestHeader, TimeSpan KeepAlive)
{
    public static ListenerTimeouts Default { get; } = new(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(75));
}
