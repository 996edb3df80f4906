namespace Fulcrum.Forwarding;

/// <summary>
/// Why Fulcrum could not serve a request as the backend meant it. Each value has a stable code
/// (<see cref="ErrorCodes"/>) sent in the <c>Fulcrum-Error</c> header and written in the access log.
/// </summary>
public enum FulcrumError
{
    None = 0,
    NoRoute,
    NoHealthyBackend,
    PoolSaturated,
    ConnectRefused,
    ConnectTimeout,
    ConnectFailed,
    ResponseTimeout,
    IdleTimeout,
    ClientTimeout,
    UpstreamReset,
    UpstreamProtocolError,
    BadRequest,
    UnsupportedTransferEncoding,
    ClientAborted,
    InternalError,
    UnsupportedUpgrade,
    TooManyConnections,
    RequestLineTooLong,
    HeadersTooLarge,

    /// <summary>The request head did not arrive within listeners[].timeouts.request_header (408).</summary>
    RequestHeaderTimeout,

    /// <summary>Plain HTTP sent to a listener that speaks TLS (400).</summary>
    TlsRequired,

    /// <summary>TLS to the backend failed: its certificate, its name, its issuer, or the handshake (502).</summary>
    UpstreamTlsError,
}
