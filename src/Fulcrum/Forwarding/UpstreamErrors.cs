using System.Net.Sockets;
using Fulcrum.Configuration;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Forwarding;

/// <summary>Turns what went wrong while forwarding into a <see cref="FulcrumError"/> and words a person can act on.</summary>
internal static class UpstreamErrors
{
    /// <summary>A failure before response headers arrived.</summary>
    /// <remarks>
    /// <paramref name="bodyStarted"/>: the request body started to flow, so it was sent on a
    /// connection; <paramref name="clientError"/>: what failed reading the client's body, if that
    /// is what failed; <paramref name="connecting"/>: a new connection was being opened.
    /// </remarks>
    public static (FulcrumError Error, string Detail) BeforeResponse(Exception exception, ForwardingTimer timer, bool bodyStarted, Exception? clientError, bool connecting)
    {
        // A body that started to flow was sent on a connection: whatever else, not a connect failure.
        connecting &= !bodyStarted;
        if (timer.ClientAborted)
        {
            return (FulcrumError.ClientAborted, "the client closed the connection before the response");
        }
        if (timer.TimedOut && connecting)
        {
            // The response timeout ran out before a connection was even open: the backend never
            // saw the request, so this is a connect failure (and another backend may be tried).
            return (FulcrumError.ConnectTimeout, $"no connection within {Duration.Format(timer.Armed)} (the route's response timeout ran out while connecting)");
        }
        if (timer.TimedOut)
        {
            return timer.AwaitingResponse
                ? (FulcrumError.ResponseTimeout, $"no response headers within {Duration.Format(timer.Armed)} (response timeout)")
                : IdleTimeout(timer);
        }
        if (clientError is not null)
        {
            // Kestrel reports a body that breaks its framing as BadHttpRequestException or, for
            // some chunk-size errors, a plain IOException; a client that went away shows up as a
            // reset or a cancellation.
            return clientError is ConnectionResetException or OperationCanceledException
                ? (FulcrumError.ClientAborted, $"the client went away while sending the request body: {clientError.Message}")
                : (FulcrumError.BadRequest, $"the request body is malformed: {clientError.Message}");
        }
        if (exception is Http1.UpstreamProtocolException invalid)
        {
            return (FulcrumError.UpstreamProtocolError, invalid.Message);
        }
        if (Find<UpstreamTlsException>(exception) is { } tls)
        {
            return (FulcrumError.UpstreamTlsError, $"TLS to the backend failed: {tls.Message}");
        }
        if (exception is HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError })
        {
            return (FulcrumError.UpstreamTlsError, $"TLS to the backend failed: {Innermost(exception).Message}");
        }
        if (Find<UpstreamConnectTimeoutException>(exception) is { } connectTimeout)
        {
            return (FulcrumError.ConnectTimeout, $"no connection within {Duration.Format(connectTimeout.Timeout)} (connect timeout)");
        }
        if (exception is HttpRequestException http)
        {
            switch (http.HttpRequestError)
            {
                case HttpRequestError.ConnectionError when Find<SocketException>(exception) is { } socket:
                    return socket.SocketErrorCode == SocketError.ConnectionRefused
                        ? (FulcrumError.ConnectRefused, "connection refused")
                        : (FulcrumError.ConnectFailed, $"cannot connect: {Describe(socket.SocketErrorCode)}");
                case HttpRequestError.ConnectionError when !bodyStarted:
                    return (FulcrumError.ConnectFailed, $"cannot connect: {Innermost(exception).Message}");
                case HttpRequestError.NameResolutionError:
                    return (FulcrumError.ConnectFailed, $"cannot resolve the backend's host name: {Innermost(exception).Message}");
                case HttpRequestError.InvalidResponse:
                case HttpRequestError.ConfigurationLimitExceeded:
                case HttpRequestError.HttpProtocolError:
                    return (FulcrumError.UpstreamProtocolError, $"the backend sent an invalid response: {Innermost(exception).Message}");
                case HttpRequestError.ResponseEnded:
                    return (FulcrumError.UpstreamReset, "the backend closed the connection before sending a response");
            }
        }
        return (FulcrumError.UpstreamReset, $"the connection to the backend broke: {Innermost(exception).Message}");
    }

    /// <summary>A failure while the response body was being relayed.</summary>
    public static (FulcrumError Error, string Detail) DuringBody(Exception exception, ForwardingTimer timer, bool clientSide)
    {
        if (timer.ClientAborted || clientSide && !timer.TimedOut)
        {
            return (FulcrumError.ClientAborted, "the client closed the connection during the response");
        }
        if (timer.TimedOut)
        {
            return IdleTimeout(timer);
        }
        if (exception is Http1.UpstreamProtocolException invalid)
        {
            // A malformed chunk or trailer: the backend broke the protocol, not the connection.
            return (FulcrumError.UpstreamProtocolError, invalid.Message);
        }
        return (FulcrumError.UpstreamReset, $"the backend broke the connection in the middle of the response body: {Innermost(exception).Message}");
    }

    private static (FulcrumError, string) IdleTimeout(ForwardingTimer timer) => timer.WaitingOn == WaitingOn.Client
        ? (FulcrumError.ClientTimeout, $"the client sent or read nothing for {Duration.Format(timer.Armed)} (idle timeout)")
        : (FulcrumError.IdleTimeout, $"the backend sent or read nothing for {Duration.Format(timer.Armed)} (idle timeout)");

    internal static T? Find<T>(Exception? exception)
        where T : Exception
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is T found)
            {
                return found;
            }
        }
        return null;
    }

    private static Exception Innermost(Exception exception)
    {
        var e = exception;
        while (e.InnerException is not null)
        {
            e = e.InnerException;
        }
        return e;
    }

    private static string Describe(SocketError error) => error switch
    {
        SocketError.HostUnreachable => "host unreachable",
        SocketError.NetworkUnreachable => "network unreachable",
        SocketError.TimedOut => "the connection attempt timed out",
        SocketError.ConnectionReset => "connection reset",
        SocketError.AddressNotAvailable => "address not available",
        SocketError.HostNotFound => "host not found",
        _ => error.ToString(),
    };
}
