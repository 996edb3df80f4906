namespace Fulcrum.Forwarding;

/// <summary>
/// The stable names and statuses of <see cref="FulcrumError"/>. These strings are a contract with
/// operators' scripts and dashboards (docs/errors.md): never rename one.
/// </summary>
public static class ErrorCodes
{
    public static string Code(FulcrumError error) => error switch
    {
        FulcrumError.None => "",
        FulcrumError.NoRoute => "no_route",
        FulcrumError.NoHealthyBackend => "no_healthy_backend",
        FulcrumError.PoolSaturated => "pool_saturated",
        FulcrumError.ConnectRefused => "connect_refused",
        FulcrumError.ConnectTimeout => "connect_timeout",
        FulcrumError.ConnectFailed => "connect_failed",
        FulcrumError.ResponseTimeout => "response_timeout",
        FulcrumError.IdleTimeout => "idle_timeout",
        FulcrumError.ClientTimeout => "client_timeout",
        FulcrumError.UpstreamReset => "upstream_reset",
        FulcrumError.UpstreamProtocolError => "upstream_protocol_error",
        FulcrumError.BadRequest => "bad_request",
        FulcrumError.UnsupportedTransferEncoding => "unsupported_transfer_encoding",
        FulcrumError.ClientAborted => "client_aborted",
        FulcrumError.InternalError => "internal_error",
        FulcrumError.UnsupportedUpgrade => "unsupported_upgrade",
        FulcrumError.TooManyConnections => "too_many_connections",
        FulcrumError.RequestLineTooLong => "request_line_too_long",
        FulcrumError.HeadersTooLarge => "headers_too_large",
        FulcrumError.RequestHeaderTimeout => "request_header_timeout",
        FulcrumError.TlsRequired => "tls_required",
        FulcrumError.UpstreamTlsError => "upstream_tls_error",
        _ => throw new ArgumentOutOfRangeException(nameof(error)),
    };

    /// <summary>The status Fulcrum answers with when it makes the response itself.</summary>
    public static int Status(FulcrumError error) => error switch
    {
        FulcrumError.NoRoute => 404,
        FulcrumError.NoHealthyBackend => 503,
        FulcrumError.PoolSaturated => 503,
        FulcrumError.ConnectRefused => 502,
        FulcrumError.ConnectTimeout => 504,
        FulcrumError.ConnectFailed => 502,
        FulcrumError.ResponseTimeout => 504,
        FulcrumError.IdleTimeout => 504,
        FulcrumError.ClientTimeout => 408,
        FulcrumError.UpstreamReset => 502,
        FulcrumError.UpstreamProtocolError => 502,
        FulcrumError.BadRequest => 400,
        // RFC 9112 §6.1: a transfer coding the server does not implement gets 501, as nginx does.
        FulcrumError.UnsupportedTransferEncoding => 501,
        // Never sent (the client is gone); logged as nginx does.
        FulcrumError.ClientAborted => 499,
        FulcrumError.InternalError => 500,
        // An HTTP/2 extended CONNECT for a protocol other than WebSocket: nothing to turn it into.
        FulcrumError.UnsupportedUpgrade => 501,
        // A listener at its max_connections: the connection is answered and closed unread.
        FulcrumError.TooManyConnections => 503,
        FulcrumError.RequestLineTooLong => 414,
        FulcrumError.HeadersTooLarge => 431,
        FulcrumError.RequestHeaderTimeout => 408,
        FulcrumError.TlsRequired => 400,
        FulcrumError.UpstreamTlsError => 502,
        _ => 500,
    };

    /// <summary>True for failures where the backend never received the request: always safe to try another.</summary>
    public static bool IsConnectFailure(FulcrumError error) =>
        error is FulcrumError.ConnectRefused or FulcrumError.ConnectTimeout or FulcrumError.ConnectFailed
            // The handshake comes before the request: the backend never saw it.
            or FulcrumError.UpstreamTlsError;
}
