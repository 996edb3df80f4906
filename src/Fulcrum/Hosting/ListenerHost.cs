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

    private ListenerHost(ListenerConfig config, WebApplication app)
    {
        _config = config;
        _app = app;
    }

    private ListenerConfig _config;

    public ListenerConfig Config => Volatile.Read(ref _config);

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
    public static async Task<ListenerHost> StartAsync(ListenerConfig config, FulcrumServerOptions options, RequestDelegate pipeline, Func<FulcrumMetrics?> metrics, ProtocolErrorLog protocolErrors, Microsoft.Extensions.Logging.ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ListenerHost? host = null;
        ListenOptions? listenOptions = null;
        var app = FulcrumServer.BuildApp(options, new KestrelLog(protocolErrors, () => host?.Name ?? config.Name, loggers), kestrel => FulcrumServer.Listen(kestrel, config.Address, l =>
        {
            // Without TLS there is no ALPN to choose a protocol per connection, so a cleartext
            // listener speaks one: HTTP/1.1, or HTTP/2 by prior knowledge.
            l.Protocols = config.Protocol == ListenerConfig.H2cProtocol ? HttpProtocols.Http2 : HttpProtocols.Http1;
            // Counts open client connections per listener for fulcrum_connections (under the
            // name it had when the connection opened).
            l.Use(next => async connection =>
            {
                var m = metrics();
                var name = host!.Name;
                m?.ConnectionOpened(name);
                try
                {
                    await next(connection).ConfigureAwait(false);
                }
                finally
                {
                    m?.ConnectionClosed(name);
                }
            });
            listenOptions = l;
        }));
        host = new ListenerHost(config, app) { _options = listenOptions };
        app.Run(pipeline);
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
