using System.Net;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Fulcrum.Hosting;

/// <summary>
/// One listener: its own Kestrel server, so a reload can bind a new listener or unbind an old one
/// without touching the others. Every listener runs the same request pipeline.
/// </summary>
internal sealed class ListenerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private ListenOptions? _options;
    private int _stopped;
    private int _open; // client connections open now, refused ones included while they are refused

    private ListenerHost(ListenerConfig config, WebApplication app)
    {
        _config = config;
        _app = app;
    }

    private ListenerConfig _config;

    public ListenerConfig Config => Volatile.Read(ref _config);

    /// <summary>The configuration its Kestrel server was built with: head limits and timeouts stay these until a restart.</summary>
    public ListenerConfig StartedWith { get; private init; } = null!;

    /// <summary>The listener's name now: a reload may rename a listener it keeps.</summary>
    public string Name => Config.Name;

    /// <summary>Keeps this listener (same address and protocol) under the name a reload gave it.</summary>
    public ListenerHost Renamed(ListenerConfig config)
    {
        Volatile.Write(ref _config, config);
        return this;
    }

    public IPEndPoint? EndPoint => _options?.IPEndPoint;

    /// <summary>
    /// Builds the listener's server and binds it. Throws <see cref="IOException"/> (naming the
    /// listener and address) when the address cannot be bound.
    /// </summary>
    public static async Task<ListenerHost> StartAsync(ListenerConfig config, FulcrumServerOptions options, RequestPipeline pipeline, Func<FulcrumMetrics?> metrics, SummarisedLog protocolErrors, SummarisedLog connectionErrors, Tls.CertificateCatalog certificates, Microsoft.Extensions.Logging.ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ListenerHost? host = null;
        ListenOptions? listenOptions = null;
        string Name() => host?.Name ?? config.Name;
        var app = FulcrumServer.BuildApp(options, new KestrelLog(protocolErrors, Name, loggers), new FulcrumTransport(Name, connectionErrors, inline: config.Protocol == ListenerConfig.HttpProtocol && config.Server == ListenerConfig.FulcrumServer), kestrel => FulcrumServer.Listen(Limited(kestrel, config), config.Address, l =>
        {
            // Without TLS there is no ALPN to choose a protocol per connection, so a cleartext
            // listener speaks one: HTTP/1.1, or HTTP/2 by prior knowledge. With TLS, ALPN picks
            // per connection (tls.alpn says what is offered).
            l.Protocols = config.Tls is not null ? HttpProtocols.Http1AndHttp2
                : config.Protocol == ListenerConfig.H2cProtocol ? HttpProtocols.Http2 : HttpProtocols.Http1;
            // Counts open client connections per listener for fulcrum_connections (under the
            // name it had when the connection opened), and refuses those past max_connections.
            l.Use(next => async connection =>
            {
                var open = Interlocked.Increment(ref host!._open);
                try
                {
                    var listener = host.Config;
                    if (open > listener.MaxConnections)
                    {
                        await RefuseAsync(connection, listener, connectionErrors).ConfigureAwait(false);
                        return;
                    }
                    var m = metrics();
                    var name = listener.Name;
                    m?.ConnectionOpened(name);
                    try
                    {
                        await next(connection).ConfigureAwait(false);
                    }
                    finally
                    {
                        m?.ConnectionClosed(name);
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref host._open);
                }
            });
            if (config.Tls is not null)
            {
                // TLS first: what follows reads and writes the decrypted pipes.
                var tls = new Tls.TlsFrontend(() => host!.Config, certificates, metrics, protocolErrors);
                l.Use(next => connection => tls.RunAsync(connection, next));
            }
            if (config.Protocol == ListenerConfig.HttpProtocol)
            {
                // Fulcrum's own HTTP/1.1 (unless listeners[].server is kestrel, read per
                // connection so a reload switches new connections); what it does not serve
                // itself goes on to Kestrel's HTTP/1.1 below it on the same connection.
                var frontend = new Frontend.Http1Frontend(pipeline.RunAsync, () => host!.Config, () => host!.StartedWith, protocolErrors);
                l.Use(next => connection => frontend.RunAsync(connection, next));
            }
            listenOptions = l;
        }));
        host = new ListenerHost(config, app) { _options = listenOptions, StartedWith = config };
        app.Run(CountedWhenLimited(host, context => pipeline.InvokeAsync(context, host.Config)));
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new IOException($"listener '{config.Name}' cannot listen on {config.Address}: {e.Message}", e);
        }
        return host;
    }

    /// <summary>The listener's head limits and client timeouts, on its own Kestrel server.</summary>
    private static KestrelServerOptions Limited(KestrelServerOptions kestrel, ListenerConfig config)
    {
        kestrel.Limits.MaxRequestLineSize = config.Limits.RequestLine;
        kestrel.Limits.MaxRequestHeadersTotalSize = config.Limits.Headers;
        kestrel.Limits.MaxRequestHeaderCount = config.Limits.HeaderCount;
        kestrel.Limits.RequestHeadersTimeout = config.Timeouts.RequestHeader;
        kestrel.Limits.KeepAliveTimeout = config.Timeouts.KeepAlive;
        return kestrel;
    }

    /// <summary>
    /// The pipeline, behind a count of the requests each HTTP/1.1 connection has carried: the
    /// one that reaches <c>limits.max_requests_per_connection</c> is answered with
    /// <c>Connection: close</c>, and Kestrel closes the connection after it. The limit is read
    /// per request, so a reload changes it; with none set the count costs a read of the config.
    /// </summary>
    private static RequestDelegate CountedWhenLimited(ListenerHost host, RequestDelegate pipeline) => context =>
    {
        if (host.Config.Limits.MaxRequestsPerConnection is { } max && context.Request.Protocol != "HTTP/2")
        {
            var items = context.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionItemsFeature>()?.Items;
            if (items is not null)
            {
                var served = items.TryGetValue(RequestsServed, out var n) ? (int)n! + 1 : 1;
                items[RequestsServed] = served;
                if (served >= max)
                {
                    context.Response.Headers.Connection = "close";
                }
            }
        }
        return pipeline(context);
    };

    private static readonly object RequestsServed = new();

    /// <summary>
    /// A connection past the listener's <c>max_connections</c>: on HTTP/1.1 a <c>503
    /// too_many_connections</c> that says so, written before anything is read, then a close (the
    /// client's request, if any, is never read, so nothing can be misread); on h2c a plain close.
    /// Counted and logged once a second at most, as the listener's other refusals.
    /// </summary>
    private static async Task RefuseAsync(Microsoft.AspNetCore.Connections.ConnectionContext connection, ListenerConfig listener, SummarisedLog errors)
    {
        errors.Report(listener.Name, "max_connections", $"refused a connection: {listener.MaxConnections} are open (listeners[].max_connections)");
        if (listener.Protocol == ListenerConfig.HttpProtocol)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await connection.Transport.Output.WriteAsync(
                    Forwarding.ErrorResponder.ConnectionRefusal(Forwarding.FulcrumError.TooManyConnections, $"Listener '{listener.Name}' already has its limit of {listener.MaxConnections} client connections open."),
                    timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
            {
                // The client is gone or reads nothing: the close below is all it gets.
            }
        }
        await connection.Transport.Output.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>Stops accepting; requests in flight finish until <paramref name="cancellationToken"/> fires, then the rest are cut.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
        {
            await _app.StopAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        using (var quick = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            await StopAsync(quick.Token).ConfigureAwait(false);
        }
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
