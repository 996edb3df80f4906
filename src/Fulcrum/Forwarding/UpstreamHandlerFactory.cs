using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Fulcrum.Configuration;

namespace Fulcrum.Forwarding;

/// <summary>
/// Builds the one <see cref="HttpMessageInvoker"/> each pool uses for every upstream request, so
/// keep-alive connections to its backends are pooled and reused.
/// </summary>
internal static class UpstreamHandlerFactory
{
    /// <param name="limits">The pool's limits: upstream connections per backend (0: unlimited; requests
    /// beyond wait for one) and the largest response head.</param>
    public static HttpMessageInvoker CreateInvoker(LimitsConfig limits)
    {
        var maxConnections = limits.MaxConnections;
        var handler = new SocketsHttpHandler
        {
            // A proxy forwards what it got: no cookies, redirects, decompression or proxy of its own.
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            // Tracing headers are Fulcrum's decision, not the handler's.
            ActivityHeadersPropagator = null,
            EnableMultipleHttp2Connections = true,
            // Close pooled connections before a typical backend's own keep-alive timeout
            // (Node.js: 5 s; nginx: 75 s) is less likely to race us; a stale one is retried by
            // the handler on a fresh connection when nothing was sent yet.
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(50),
            ConnectCallback = ConnectAsync,
            Expect100ContinueTimeout = TimeSpan.FromSeconds(1),
            MaxConnectionsPerServer = maxConnections > 0 ? maxConnections : int.MaxValue,
            // In KiB, as the pooled path's limit in bytes (rounded up).
            MaxResponseHeadersLength = (limits.UpstreamResponseHeaders + 1023) / 1024,
            // Byte-transparent header values in both directions (see FulcrumServer).
            RequestHeaderEncodingSelector = static (_, _) => System.Text.Encoding.Latin1,
            ResponseHeaderEncodingSelector = static (_, _) => System.Text.Encoding.Latin1,
        };
        return new HttpMessageInvoker(handler, disposeHandler: true);
    }

    /// <summary>
    /// Connects with the route's own connect timeout (the handler's timeout is per pool, not per
    /// route) and records the time taken, so the access log can show connect time.
    /// </summary>
    private static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var request = context.InitialRequestMessage as UpstreamRequest;
        var timeout = request?.ConnectTimeout ?? TimeoutsConfig.DefaultConnect;
        var started = Stopwatch.GetTimestamp();
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (request is not null)
        {
            request.Connecting = true;
        }
        try
        {
            using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeoutSource.CancelAfter(timeout);
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, timeoutSource.Token).ConfigureAwait(false);
                if (request?.Tls is { } tls)
                {
                    // TLS under the handler: it sees a plain stream to an http:// URI, so its
                    // pool, its parser and Fulcrum's own pool share one way to verify a backend.
                    var ssl = await tls.AuthenticateAsync(socket, context.DnsEndPoint.Host, timeoutSource.Token).ConfigureAwait(false);
                    Connected(request, started);
                    return new SocketOwningStream(ssl, socket);
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new UpstreamConnectTimeoutException(timeout);
            }
        }
        catch
        {
            socket.Dispose();
            if (request is not null)
            {
                request.Connecting = false;
            }
            throw;
        }
        Connected(request, started);
        return new NetworkStream(socket, ownsSocket: true);
    }

    private static void Connected(UpstreamRequest? request, long started)
    {
        if (request is not null)
        {
            request.Connecting = false;
            request.ConnectTicks = Stopwatch.GetTimestamp() - started;
        }
    }
}
