using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Fulcrum.Configuration;
using Fulcrum.Runtime;

namespace Fulcrum.Health;

/// <summary>
/// HTTP and TCP probes over the network. HTTP probes share one handler with its own keep-alive
/// pool (separate from traffic, so a probe never waits behind requests); each result's detail is
/// the sentence an operator reads in the backend's health reason.
/// </summary>
internal sealed class NetworkHealthProbe : IHealthProbe, IDisposable
{
    private const int MaxBody = 64 * 1024;

    private readonly TimeProvider _time;
    private readonly HttpMessageInvoker _client = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        ActivityHeadersPropagator = null,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
    });

    public NetworkHealthProbe(TimeProvider time) => _time = time;

    // One handler per pool TLS settings, kept while the settings live (a reload makes new ones).
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<Forwarding.UpstreamTls, HttpMessageInvoker> _tlsClients = [];

    /// <summary>
    /// The client for a probe: the shared one, or for a pool with <c>tls</c> one whose connect
    /// callback makes the same verified handshake as traffic does (the URI stays http://).
    /// </summary>
    private HttpMessageInvoker ClientFor(Forwarding.UpstreamTls? tls) => tls is null ? _client : _tlsClients.GetValue(tls, static t => new HttpMessageInvoker(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        ActivityHeadersPropagator = null,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
        ConnectCallback = async (context, token) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, token).ConfigureAwait(false);
                var ssl = await t.AuthenticateAsync(socket, context.DnsEndPoint.Host, token).ConfigureAwait(false);
                return new Forwarding.SocketOwningStream(ssl, socket);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    }));

    public async Task<ProbeResult> ProbeAsync(ActiveHealthConfig config, BackendState backend, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var endpoint = backend.Config.Endpoint;
        var port = config.Port ?? endpoint.Port;
        var what = config.Type == ProbeType.Tcp ? $"TCP connect to port {port}" : $"{config.Method} {config.Path}";
        try
        {
            return config.Type == ProbeType.Tcp
                ? await TcpAsync(endpoint, port, started, cancellationToken).ConfigureAwait(false)
                : await HttpAsync(config, backend, endpoint, port, started, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return Fail($"health check timed out after {Duration.Format(config.Timeout)} ({what})", null, started);
        }
        catch (Exception e) when (Forwarding.UpstreamErrors.Find<Forwarding.UpstreamTlsException>(e) is { } tls)
        {
            return Fail($"TLS to the backend failed: {tls.Message}", null, started);
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or IOException)
        {
            return Fail(Describe(e), null, started);
        }
    }

    private async Task<ProbeResult> HttpAsync(ActiveHealthConfig config, BackendState backend, HostPort endpoint, int port, long started, CancellationToken cancellationToken)
    {
        var target = backend.ProbeTarget(config, port);
        using var request = new HttpRequestMessage(target.Method, target.Uri) { Version = HttpVersion.Version11 };
        request.Headers.TryAddWithoutValidation("Host", target.Host);
        request.Headers.TryAddWithoutValidation("User-Agent", "fulcrum-health-check");
        using var response = await ClientFor(backend.Owner?.Tls).SendAsync(request, cancellationToken).ConfigureAwait(false);
        var status = (int)response.StatusCode;
        if (!config.Accepts(status))
        {
            return Fail($"health check got {status} from {config.Method} {config.Path}, expected {config.ExpectedText}", status, started);
        }
        if (config.ExpectBody is { } expected)
        {
            var body = await ReadSomeAsync(response, cancellationToken).ConfigureAwait(false);
            if (!body.Contains(expected, StringComparison.Ordinal))
            {
                return Fail($"health check body from {config.Method} {config.Path} does not contain '{expected}'", status, started);
            }
        }
        // The detail holds no latency, so a passing probe leaves the health reason unchanged;
        // the latency is in the result itself.
        return new ProbeResult(true, status == 200 ? target.Passed200 : $"{config.Method} {config.Path} answered {status}", status, Stopwatch.GetElapsedTime(started), _time.GetUtcNow());
    }

    private async Task<ProbeResult> TcpAsync(HostPort endpoint, int port, long started, CancellationToken cancellationToken)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new DnsEndPoint(endpoint.Host, port), cancellationToken).ConfigureAwait(false);
        return new ProbeResult(true, $"TCP connect to port {port}", null, Stopwatch.GetElapsedTime(started), _time.GetUtcNow());
    }

    private static async Task<string> ReadSomeAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        var buffer = new byte[MaxBody];
        var total = 0;
        int read;
        while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false)) > 0)
        {
            total += read;
        }
        return System.Text.Encoding.UTF8.GetString(buffer, 0, total);
    }

    private ProbeResult Fail(string detail, int? status, long started) =>
        new(false, detail, status, Stopwatch.GetElapsedTime(started), _time.GetUtcNow());

    private static string Describe(Exception e)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is SocketException socket)
            {
                return socket.SocketErrorCode switch
                {
                    SocketError.ConnectionRefused => "connection refused",
                    SocketError.ConnectionReset => "connection reset",
                    SocketError.HostNotFound or SocketError.NoData => "the host name does not resolve",
                    SocketError.HostUnreachable => "host unreachable",
                    SocketError.NetworkUnreachable => "network unreachable",
                    _ => $"cannot connect: {socket.SocketErrorCode}",
                };
            }
        }
        if (e is HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded })
        {
            return "the backend closed the connection without answering the health check";
        }
        if (e is HttpRequestException { HttpRequestError: HttpRequestError.InvalidResponse })
        {
            return "the health check's answer is not valid HTTP/1.1";
        }
        var innermost = e;
        while (innermost.InnerException is not null)
        {
            innermost = innermost.InnerException;
        }
        return $"health check failed: {innermost.Message}";
    }

    public void Dispose() => _client.Dispose();
}
