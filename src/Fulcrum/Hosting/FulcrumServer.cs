using System.Net;
using Fulcrum.Admin;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Hosting;

/// <summary>Options for running Fulcrum that do not come from the configuration file.</summary>
public sealed class FulcrumServerOptions
{
    /// <summary>Fulcrum's own log level (the access log is separate). Defaults to Information.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>Replaces the access log the configuration asks for (tests use this).</summary>
    public AccessLog? AccessLog { get; init; }

    public TimeProvider? TimeProvider { get; init; }

    /// <summary>The version reported in fulcrum_build_info.</summary>
    public string Version { get; init; } = typeof(FulcrumServer).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>Replaces the network health probe (tests use this).</summary>
    public Health.IHealthProbe? HealthProbe { get; init; }
}

/// <summary>
/// A running Fulcrum: Kestrel listeners built from the configuration, the request pipeline behind
/// them, and the admin listener beside them. Embeddable: tests and the CLI both start it this way.
/// </summary>
public sealed partial class FulcrumServer : IAsyncDisposable
{
    private readonly Dictionary<string, ListenerHost> _listeners;
    private readonly WebApplication? _admin;
    private readonly ListenOptions? _adminListen;
    private readonly AccessLog _accessLog;
    private readonly FulcrumServerOptions _options;
    private readonly RequestPipeline _pipeline;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private int _stopped;

    private FulcrumServer(Dictionary<string, ListenerHost> listeners, WebApplication? admin, ListenOptions? adminListen, FulcrumRuntime runtime, AccessLog accessLog, FulcrumServerOptions options, RequestPipeline pipeline, ILoggerFactory loggers)
    {
        _listeners = listeners;
        _admin = admin;
        _adminListen = adminListen;
        Runtime = runtime;
        _accessLog = accessLog;
        _options = options;
        _pipeline = pipeline;
        _loggers = loggers;
        _log = loggers.CreateLogger("Fulcrum.Config");
        _appliedAt = runtime.Time.GetUtcNow();
        _startConfig = runtime.Current.Config;
    }

    /// <summary>The configuration at start: the sections a reload cannot change are the ones in it.</summary>
    private readonly FulcrumConfig _startConfig;

    public FulcrumRuntime Runtime { get; }

    /// <summary>Set once the configuration is applied and every listener is bound.</summary>
    public bool Ready { get; private set; }

    /// <summary>The address a listener actually bound (its real port when configured with port 0).</summary>
    public IPEndPoint ListenerEndPoint(string name)
    {
        lock (_listeners)
        {
            return _listeners.TryGetValue(name, out var host) && host.EndPoint is { } endPoint
                ? endPoint
                : throw new ArgumentException($"no listener named '{name}'", nameof(name));
        }
    }

    /// <summary>The names of the listeners bound now.</summary>
    public IReadOnlyList<string> ListenerNames
    {
        get
        {
            lock (_listeners)
            {
                return [.. _listeners.Keys];
            }
        }
    }

    public IPEndPoint? AdminEndPoint => _adminListen?.IPEndPoint;

    private PrometheusExporter? _exporter;
    private IDisposable? _tracer;

    /// <summary>The instruments this server records on (an OpenTelemetry pipeline can listen to <see cref="FulcrumMetrics.Meter"/>).</summary>
    public FulcrumMetrics? Metrics { get; private init; }

    /// <summary>Where Kestrel's client-caused errors are counted and summarised, for every listener.</summary>
    internal SummarisedLog ProtocolErrors { get; private init; } = null!;

    /// <summary>The TLS listeners' certificates, kept in step with their files.</summary>
    internal Tls.CertificateCatalog Certificates { get; private init; } = null!;

    /// <summary>Every certificate the TLS listeners use, one entry per certificate file, with the listeners that serve it.</summary>
    internal IReadOnlyList<CertificateView> CertificateViews()
    {
        var now = DateTimeOffset.UtcNow;
        var views = new List<CertificateView>();
        var users = new Dictionary<Configuration.CertificateSourceConfig, List<string>>();
        foreach (var listener in Runtime.Current.Config.Listeners)
        {
            foreach (var source in listener.Tls?.Certificates ?? Configuration.EquatableList<Configuration.CertificateSourceConfig>.Empty)
            {
                if (!users.TryGetValue(source, out var names))
                {
                    users[source] = names = [];
                }
                names.Add(listener.Name);
            }
        }
        foreach (var (config, listeners) in users)
        {
            var source = Certificates.Get(config);
            var problems = source.Problems;
            foreach (var c in source.Current)
            {
                views.Add(new CertificateView(c.Names, c.Leaf.Subject, c.Leaf.Issuer, c.NotBefore, c.NotAfter, (int)Math.Floor((c.NotAfter - now).TotalDays), c.Sha256,
                    "file", c.File, listeners, source.ChangedAt, problems.GetValueOrDefault(c.File)));
            }
            // A file that fails and serves nothing (a folder's new file that never loaded) is shown too.
            foreach (var (file, problem) in problems)
            {
                if (problem is not null && !source.Current.Any(c => c.File == file))
                {
                    views.Add(new CertificateView([], "", "", default, default, 0, "", "file", file, listeners, source.ChangedAt, problem));
                }
            }
        }
        return views;
    }

    /// <summary>Each certificate a TLS listener can serve now, by listener, for the expiry gauge and <c>fulcrum certs</c>.</summary>
    internal IEnumerable<(string Listener, string Name, DateTimeOffset NotAfter)> ServedCertificates()
    {
        foreach (var listener in Runtime.Current.Config.Listeners)
        {
            if (listener.Tls is not { } tls)
            {
                continue;
            }
            foreach (var source in tls.Certificates)
            {
                foreach (var certificate in Certificates.Get(source).Current)
                {
                    yield return (listener.Name, certificate.Name, certificate.NotAfter);
                }
            }
        }
    }

    /// <summary>Where failed accepts and connections refused at a listener's limit are counted and summarised.</summary>
    internal SummarisedLog ConnectionErrors { get; private init; } = null!;

    /// <summary>Reopens the access log file (SIGUSR1, after logrotate moved it).</summary>
    public void ReopenAccessLog() => _accessLog.Reopen();

    /// <summary>The metrics in the Prometheus text format, as <c>GET /metrics</c> on the admin listener serves them.</summary>
    public string ScrapeMetrics() => _exporter?.Scrape() ?? "";

    /// <summary>The admin API, when the configuration has an admin section.</summary>
    internal AdminApi? AdminApi { get; private set; }

    public static async Task<FulcrumServer> StartAsync(FulcrumConfig config, FulcrumServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new FulcrumServerOptions();
        var loggers = CreateLoggers(options);
        DescriptorReserve.Take();
        FulcrumRuntime runtime;
        try
        {
            runtime = new FulcrumRuntime(config, options.TimeProvider, loggers, options.HealthProbe);
        }
        catch
        {
            loggers.Dispose();
            throw;
        }
        var accessLog = options.AccessLog ?? AccessLog.Create(config.AccessLog);
        var metrics = new FulcrumMetrics(runtime, options.Version, accessLog);
        var time = options.TimeProvider ?? TimeProvider.System;
        var protocolErrors = new SummarisedLog(loggers.CreateLogger("Fulcrum.Protocol"), time,
            metrics.Meter.CreateCounter<long>("fulcrum_client_protocol_errors_total", description: "Protocol errors clients caused, by listener and kind (logged at most once a second each)."),
            "client protocol error");
        var connectionErrors = new SummarisedLog(loggers.CreateLogger("Fulcrum.Connections"), time,
            metrics.Meter.CreateCounter<long>("fulcrum_connections_refused_total", description: "Client connections not served: accepts that failed (file descriptors exhausted) and connections refused at max_connections, by listener and kind."),
            "connection not served");
        var exporter = new PrometheusExporter(metrics.Meter);
        metrics.ExportTo(exporter);
        var pipeline = new RequestPipeline(runtime, accessLog, loggers.CreateLogger("Fulcrum.Requests"), config.MetricsEnabled ? metrics : null);
        var certificates = new Tls.CertificateCatalog(loggers.CreateLogger("Fulcrum.Tls"), time);
        certificates.Changed += e => metrics.CertificateChanges.Add(1, new KeyValuePair<string, object?>("result", e.Kind.ToString().ToLowerInvariant()));
        certificates.Use(config);

        ListenOptions? adminListen = null;
        WebApplication? admin = null;
        if (config.Admin is { } adminConfig)
        {
            admin = BuildApp(options, new KestrelLog(protocolErrors, () => "admin", loggers), new FulcrumTransport(() => "admin", connectionErrors), kestrel => Listen(kestrel, adminConfig.Address, l =>
            {
                l.Protocols = HttpProtocols.Http1;
                adminListen = l;
            }));
        }

        var server = new FulcrumServer(new Dictionary<string, ListenerHost>(StringComparer.Ordinal), admin, adminListen, runtime, accessLog, options, pipeline, loggers)
        {
            Metrics = metrics,
            _exporter = exporter,
            ProtocolErrors = protocolErrors,
            ConnectionErrors = connectionErrors,
            Certificates = certificates,
            _tracer = config.OtlpEndpoint is { } otlp ? OtlpTracing.Start(otlp, options.Version) : null,
        };
        if (admin is not null)
        {
            AdminTokens tokens;
            try
            {
                tokens = config.Admin!.TokenFile is { } file ? AdminTokens.Load(config.Resolve(file)!) : AdminTokens.None;
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }
            server.AdminApi = new AdminApi(runtime, tokens, new AuditLog(), () => server.Ready && !server.ShuttingDown, server.RequestShutdown, exporter.Scrape)
            {
                Reload = server.ReloadAsync,
                ConfigStatus = () => server.Status,
                Certificates = server.CertificateViews,
            };
            admin.Run(server.AdminApi.HandleAsync);
        }
        try
        {
            // Warm up before opening the listeners: a pool with active checks would otherwise
            // answer its first requests with no_healthy_backend while every backend is still
            // pending. The first probe round is bounded by the longest probe timeout.
            try
            {
                await runtime.Start().WaitAsync(runtime.FirstRoundLimit, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
            foreach (var listener in config.Listeners)
            {
                var host = await ListenerHost.StartAsync(listener, options, server._pipeline, () => server.Metrics, server.ProtocolErrors, server.ConnectionErrors, server.Certificates, server._loggers, cancellationToken).ConfigureAwait(false);
                lock (server._listeners)
                {
                    server._listeners[listener.Name] = host;
                }
            }
            if (admin is not null)
            {
                await admin.StartAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        metrics.Certificates = server.ServedCertificates;
        server.Ready = true;
        if (config.SourcePath is { } path)
        {
            server._watcher = new ConfigWatcher(path, config.SourceHash, () => server.ReloadAsync("file"), server._log);
            server._watcher.LookNow();
        }
        return server;
    }

    /// <summary>
    /// <c>FULCRUM_TRANSPORT=kestrel</c>: Kestrel's own accept loop instead of <see cref="FulcrumTransport"/>
    /// (which spins when descriptors run out): for the benchmark, or to rule the transport out.
    /// </summary>
    private static readonly bool KestrelTransport = string.Equals(Environment.GetEnvironmentVariable("FULCRUM_TRANSPORT"), "kestrel", StringComparison.OrdinalIgnoreCase);

    /// <summary>Fulcrum's own log: single lines on stderr (stdout belongs to the access log).</summary>
    private static ILoggerFactory CreateLoggers(FulcrumServerOptions options) => LoggerFactory.Create(b =>
    {
        b.SetMinimumLevel(options.LogLevel);
        b.AddSimpleConsole(o => o.SingleLine = true);
        b.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    });

    /// <param name="options">The server's options (log level).</param>
    /// <param name="kestrelLog">Takes Kestrel's own log (client-caused errors counted and summarised); the console gets none of it.</param>
    /// <param name="listen">Binds the app's one address.</param>
    /// <param name="transport">The listening socket and its accept loop.</param>
    internal static WebApplication BuildApp(FulcrumServerOptions options, KestrelLog kestrelLog, FulcrumTransport transport, Action<KestrelServerOptions> listen)
    {
        // Refuse a bare LF as a line ending in request heads. Kestrel accepts one by default, so
        // "X-A: x\nContent-Length: 5" would be two headers here and one to a front proxy that
        // reads LF as part of the value: a framing disagreement smugglers use (RFC 9112 §2.2).
        AppContext.SetSwitch("Microsoft.AspNetCore.Server.Kestrel.DisableHttp1LineFeedTerminators", true);
        // Close a connection Fulcrum aborts (after refusing a malformed request) with a FIN, not a
        // reset, so the client reads the 400 that was sent before the close.
        AppContext.SetSwitch("Microsoft.AspNetCore.Server.Kestrel.FinOnError", true);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.SetMinimumLevel(options.LogLevel);
        // Fulcrum's own log goes to stderr; stdout belongs to the access log.
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // Kestrel's log goes through KestrelLog alone: a client's malformed bytes become a counter
        // and a summarised line, never a stack trace per connection (issue 20).
        builder.Logging.AddFilter<Microsoft.Extensions.Logging.Console.ConsoleLoggerProvider>(KestrelLog.Category, LogLevel.None);
        builder.Logging.AddProvider(kestrelLog);
        builder.Logging.AddFilter<KestrelLog>(KestrelLog.Category, LogLevel.Debug);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        // Fulcrum reports a listener that cannot bind itself, in one line; the host's own
        // "Hosting failed to start" with a stack trace would only bury it.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        // With any level enabled here, ASP.NET Core opens a logging scope for every request
        // (an allocation and an AsyncLocal write) that nothing of Fulcrum's reads.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        // The drain is bounded by shutdown.drain_timeout (StopAsync's token), not by the host's own
        // 30 s default, which would cut a longer drain short.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = Timeout.InfiniteTimeSpan);
        builder.WebHost.UseKestrelCore();
        // Registered last, so Kestrel prefers it to its own socket transport.
        // FULCRUM_TRANSPORT=kestrel keeps Kestrel's, to compare the two in one bench run (ALT_ENV).
        if (!KestrelTransport)
        {
            builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IConnectionListenerFactory>(services =>
            {
                transport.Pools = services.GetService<Microsoft.AspNetCore.Connections.IMemoryPoolFactory<byte>>();
                return transport;
            });
        }
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Bodies stream through; their size is the backend's business, and slowness is
            // bounded by the idle timeout rather than by a minimum data rate.
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.MinResponseDataRate = null;
            // Header values pass through byte for byte: obs-text (0x80-0xFF) is allowed by
            // RFC 9110 §5.5 and nginx and HAProxy forward it; Latin-1 maps each byte to one char.
            kestrel.RequestHeaderEncodingSelector = static _ => System.Text.Encoding.Latin1;
            kestrel.ResponseHeaderEncodingSelector = static _ => System.Text.Encoding.Latin1;
            listen(kestrel);
        });
        return builder.Build();
    }

    internal static void Listen(KestrelServerOptions kestrel, HostPort address, Action<ListenOptions> configure)
    {
        if (address.IsAnyHost)
        {
            kestrel.ListenAnyIP(address.Port, l => configure(l));
        }
        else if (address.Ip is { } ip)
        {
            kestrel.Listen(ip, address.Port, l => configure(l));
        }
        else if (string.Equals(address.Host, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            kestrel.Listen(IPAddress.Loopback, address.Port, l => configure(l));
        }
        else
        {
            IPAddress[] resolved;
            try
            {
                resolved = Dns.GetHostAddresses(address.Host);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                throw new IOException($"cannot listen on {address}: the host name '{address.Host}' does not resolve ({e.Message})", e);
            }
            kestrel.Listen(resolved[0], address.Port, l => configure(l));
        }
    }

    private readonly TaskCompletionSource<string> _shutdownRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>True from the moment a graceful shutdown begins: <c>/readyz</c> answers 503.</summary>
    public bool ShuttingDown { get; private set; }

    /// <summary>Completes, with who asked, when a shutdown is requested through the admin API.</summary>
    public Task<string> ShutdownRequested => _shutdownRequested.Task;

    internal void RequestShutdown(string by) => _shutdownRequested.TrySetResult(by);

    /// <summary>
    /// The graceful shutdown (SIGTERM, Ctrl-C, the admin API): <c>/readyz</c> turns 503 at once;
    /// the listeners keep accepting for <paramref name="delay"/>, so an outer load balancer sees
    /// it and stops sending; then they stop accepting and requests in flight finish for up to
    /// <paramref name="drainTimeout"/>; what is left then is closed.
    /// </summary>
    public async Task ShutdownAsync(TimeSpan delay, TimeSpan drainTimeout, CancellationToken cancellationToken = default)
    {
        ShuttingDown = true;
        if (delay > TimeSpan.Zero)
        {
            await Task.Delay(delay, Runtime.Time, cancellationToken).ConfigureAwait(false);
        }
        await StopAsync(drainTimeout).ConfigureAwait(false);
    }

    /// <summary>Stops accepting, lets requests in flight finish for up to <paramref name="drainTimeout"/>, then closes.</summary>
    public async Task StopAsync(TimeSpan drainTimeout)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }
        // A reload in progress finishes first (its listeners are then among those stopped); any
        // later one finds the server stopped and changes nothing.
        await _reloadGate.WaitAsync().ConfigureAwait(false);
        _reloadGate.Release();
        ShuttingDown = true;
        Ready = false;
        // Tunnels get the drain timeout too, then a close of their own (1001 to both sides of a
        // WebSocket) and a moment for it, before Kestrel cuts whatever is left.
        _watcher?.Dispose();
        // Kestrel closes the listeners at once, lets requests in flight finish (closing each
        // keep-alive connection after its current request), and aborts what is left when the
        // token fires. The admin listener stays up until the proxy has drained, so /readyz can
        // be watched throughout. A reload waiting for its turn finds the server stopped.
        ListenerHost[] hosts;
        lock (_listeners)
        {
            hosts = [.. _listeners.Values, .. _leaving];
        }
        using var cut = new CancellationTokenSource();
        var stopping = Task.WhenAll(hosts.Select(h => h.StopAsync(cut.Token)));
        if (await Task.WhenAny(stopping, Task.Delay(drainTimeout)).ConfigureAwait(false) != stopping)
        {
            // Tunnels do not end by themselves: past the drain timeout they are closed (1001 to
            // both sides of a WebSocket) and get a moment for it before Kestrel cuts the rest.
            if (Runtime.Tunnels.Count > 0)
            {
                Runtime.Tunnels.CloseAll(Forwarding.TunnelCloseReasons.Shutdown);
                await Runtime.Tunnels.WaitEmptyAsync(TunnelCloseGrace).ConfigureAwait(false);
            }
            await cut.CancelAsync().ConfigureAwait(false);
        }
        await stopping.ConfigureAwait(false);
        if (_admin is not null)
        {
            using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await _admin.StopAsync(quick.Token).ConfigureAwait(false);
        }
    }

    /// <summary>How long tunnels closed at shutdown get to say goodbye before Kestrel cuts them (a close takes up to about 4 s).</summary>
    private static readonly TimeSpan TunnelCloseGrace = TimeSpan.FromSeconds(5);

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        ListenerHost[] hosts;
        lock (_listeners)
        {
            hosts = [.. _listeners.Values, .. _leaving];
        }
        foreach (var host in hosts)
        {
            await host.DisposeAsync().ConfigureAwait(false);
        }
        if (_admin is not null)
        {
            await _admin.DisposeAsync().ConfigureAwait(false);
        }
        _tracer?.Dispose(); // flushes the spans not yet exported
        _exporter?.Dispose();
        Metrics?.Dispose();
        Certificates.Dispose();
        Runtime.Dispose();
        await _accessLog.DisposeAsync().ConfigureAwait(false);
        _loggers.Dispose();
        if (_accessLog.Dropped > 0)
        {
            await Console.Error.WriteLineAsync($"fulcrum: {_accessLog.Dropped} access log line(s) were dropped because the log could not keep up").ConfigureAwait(false);
        }
    }
}
