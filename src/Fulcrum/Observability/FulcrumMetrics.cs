using System.Diagnostics;
using System.Diagnostics.Metrics;
using Fulcrum.Forwarding;
using Fulcrum.Health;
using Fulcrum.Runtime;

namespace Fulcrum.Observability;

/// <summary>
/// Fulcrum's instruments, on a <see cref="Meter"/> of its own per server, named as Prometheus
/// shows them (docs/observability.md). An OpenTelemetry pipeline can listen to the same meter.
/// Label values come only from configuration and fixed sets: never a path or a client address.
/// </summary>
public sealed class FulcrumMetrics : IDisposable
{
    public const string MeterName = "Fulcrum";

    private static readonly string[] StatusText = BuildStatusText();
    private readonly FulcrumRuntime _runtime;
    private readonly Dictionary<string, int> _connections = new(StringComparer.Ordinal);

    /// <param name="runtime">The pools and health whose gauges are read at scrape time.</param>
    /// <param name="version">Fulcrum's version, for <c>fulcrum_build_info</c>.</param>
    /// <param name="accessLog">The access log whose dropped lines are counted, if any.</param>
    public FulcrumMetrics(FulcrumRuntime runtime, string version, AccessLog? accessLog = null)
    {
        _runtime = runtime;
        Meter = new Meter(MeterName, version);
        Requests = Meter.CreateCounter<long>("fulcrum_requests_total", description: "Client requests, by the status sent and the Fulcrum error code (empty when none).");
        UpstreamAttempts = Meter.CreateCounter<long>("fulcrum_upstream_attempts_total", description: "Tries of a backend, by result: ok or an error code.");
        RequestDuration = Meter.CreateHistogram<double>("fulcrum_request_duration_seconds", "s", "Time from a request's arrival to the end of its response.");
        ConnectDuration = Meter.CreateHistogram<double>("fulcrum_upstream_connect_duration_seconds", "s", "Time to open a connection to a backend (new connections only).");
        ResponseDuration = Meter.CreateHistogram<double>("fulcrum_upstream_response_duration_seconds", "s", "Time from sending a try to its response headers.");
        HealthProbes = Meter.CreateCounter<long>("fulcrum_health_probes_total", description: "Active health probes, by result: success or failure.");
        HealthTransitions = Meter.CreateCounter<long>("fulcrum_health_transitions_total", description: "Changes of a backend's health status, by the status entered.");
        Ejections = Meter.CreateCounter<long>("fulcrum_ejections_total", description: "Passive ejections of a backend.");
        Retries = Meter.CreateCounter<long>("fulcrum_retries_total", description: "Retries, by the route and the failure that caused them.");
        Errors = Meter.CreateCounter<long>("fulcrum_errors_total", description: "Responses Fulcrum made itself or cut, by error code.");
        Meter.CreateObservableGauge("fulcrum_backend_up", ObserveUp, description: "1 when the backend may take new traffic, else 0.");
        Meter.CreateObservableGauge("fulcrum_backend_health", ObserveHealth, description: "The backend's health status, one-hot over the statuses.");
        Meter.CreateObservableGauge("fulcrum_backend_unchecked", ObserveUnchecked, description: "1 when the backend is healthy only by default: no active check and no request answered yet.");
        Meter.CreateObservableGauge("fulcrum_backend_in_flight", ObserveInFlight, description: "Requests in flight to the backend.");
        Meter.CreateObservableGauge("fulcrum_backend_tunnels", ObserveTunnels, description: "Open WebSocket and other upgrade tunnels to the backend (each also counts in fulcrum_backend_in_flight).");
        Meter.CreateObservableCounter("fulcrum_retry_budget_exhausted_total", ObserveBudget, description: "Retries refused because the pool's retry budget was spent.");
        Meter.CreateObservableGauge("fulcrum_connections", ObserveConnections, description: "Open client connections, by listener.");
        Meter.CreateObservableGauge("fulcrum_build_info", () => new Measurement<int>(1, new KeyValuePair<string, object?>("version", version)), description: "Always 1; the version is in the label.");
        if (accessLog is { Enabled: true })
        {
            Meter.CreateObservableCounter("fulcrum_access_log_dropped_total", () => accessLog.Dropped, description: "Access log lines dropped because the writer fell behind or its output failed.");
        }
        _applied = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        Meter.CreateObservableGauge("fulcrum_config_last_reload_success_timestamp_seconds", () => Volatile.Read(ref _applied), "s", "When the configuration in force was applied (Unix time).");
        Reloads = Meter.CreateCounter<long>("fulcrum_config_reloads_total", description: "Configuration reloads, by result (success or failure).");
        TlsHandshakes = Meter.CreateCounter<long>("fulcrum_tls_handshakes_total", description: "TLS handshakes on a listener, by result: ok or why it failed (protocol_version, no_shared_cipher, unknown_ca, no_certificate, unrecognized_name, plain_http, ...).");
        CertificateChanges = Meter.CreateCounter<long>("fulcrum_tls_certificate_reloads_total", description: "Certificate files read after a change, by result: loaded, replaced, refused (the old one keeps serving) or removed.");
        Meter.CreateObservableGauge("fulcrum_tls_certificate_expiry_timestamp_seconds", ObserveCertificates, "s", "When each certificate a TLS listener serves expires (Unix time), by listener and the certificate's first DNS name.");

        runtime.Health.Changed += OnHealthChanged;
        runtime.Health.Probed += OnProbed;
    }

    public Meter Meter { get; }

    internal Counter<long> Requests { get; }
    internal Counter<long> UpstreamAttempts { get; }
    internal Histogram<double> RequestDuration { get; }
    internal Histogram<double> ConnectDuration { get; }
    internal Histogram<double> ResponseDuration { get; }
    internal Counter<long> HealthProbes { get; }
    internal Counter<long> HealthTransitions { get; }
    internal Counter<long> Ejections { get; }
    internal Counter<long> Retries { get; }
    internal Counter<long> Errors { get; }
    internal Counter<long> Reloads { get; }
    internal Counter<long> TlsHandshakes { get; }
    internal Counter<long> CertificateChanges { get; }

    /// <summary>The certificates TLS listeners serve now, for the expiry gauge (set by the server).</summary>
    internal Func<IEnumerable<(string Listener, string Name, DateTimeOffset NotAfter)>>? Certificates { get; set; }

    internal void TlsHandshake(string listener, string result) =>
        TlsHandshakes.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("result", result));

    private IEnumerable<Measurement<double>> ObserveCertificates()
    {
        if (Certificates is not { } certificates)
        {
            yield break;
        }
        foreach (var (listener, name, notAfter) in certificates())
        {
            yield return new Measurement<double>(notAfter.ToUnixTimeSeconds(), new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("name", name));
        }
    }

    private double _applied;

    // Set once the server's exporter takes the per-request instruments directly (ExportTo).
    private DirectCells? _requestCells;
    private DirectCells? _durationCells;
    private DirectCells? _attemptCells;
    private DirectCells? _responseCells;

    /// <summary>
    /// Records the four per-request instruments straight into <paramref name="exporter"/>'s cells
    /// from now on, rather than through its listener: the same totals at a fraction of the cost
    /// (docs/performance.md). The instruments still carry every measurement to any other
    /// listener, an OpenTelemetry pipeline say, whenever one is subscribed.
    /// </summary>
    internal void ExportTo(PrometheusExporter exporter)
    {
        exporter.RecordDirectly([Requests, RequestDuration, UpstreamAttempts, ResponseDuration]);
        _requestCells = new DirectCells(exporter, Requests, "route", "pool", "backend", "status", "error");
        _durationCells = new DirectCells(exporter, RequestDuration, "route", "pool");
        _attemptCells = new DirectCells(exporter, UpstreamAttempts, "pool", "backend", "result");
        _responseCells = new DirectCells(exporter, ResponseDuration, "pool", "backend");
    }

    /// <summary>One reload: counted by result; a success also moves the applied timestamp.</summary>
    internal void RecordReload(bool success, DateTimeOffset at)
    {
        Reloads.Add(1, new KeyValuePair<string, object?>("result", success ? "success" : "failure"));
        if (success)
        {
            Volatile.Write(ref _applied, at.ToUnixTimeMilliseconds() / 1000.0);
        }
    }

    /// <summary>A status code as a label value, without allocating.</summary>
    internal static string Status(int status) => status is >= 0 and < 600 ? StatusText[status] : status.ToString(System.Globalization.CultureInfo.InvariantCulture);

    internal void ConnectionOpened(string listener) => ChangeConnections(listener, +1);

    internal void ConnectionClosed(string listener) => ChangeConnections(listener, -1);

    private void ChangeConnections(string listener, int delta)
    {
        lock (_connections)
        {
            _connections[listener] = _connections.GetValueOrDefault(listener) + delta;
        }
    }

    /// <summary>One client request, at its end.</summary>
    internal void RecordRequest(RequestRecord record)
    {
        var route = record.Route ?? "";
        var pool = record.Pool ?? "";
        var backend = record.BackendAnswered ? record.Backend ?? "" : "";
        var status = Status(record.Status);
        var error = ErrorCodes.Code(record.Error);
        _requestCells?.Get(route, pool, backend, status, error).Add(1);
        if (Requests.Enabled)
        {
            Requests.Add(1, new TagList
            {
                { "route", route },
                { "pool", pool },
                { "backend", backend },
                { "status", status },
                { "error", error },
            });
        }
        if (record.Error != FulcrumError.None)
        {
            Errors.Add(1, new KeyValuePair<string, object?>("code", error));
        }
        if (!record.Tunnelled)
        {
            // A WebSocket's hour-long life is not a response time: it would swamp the percentiles.
            var seconds = record.DurationMs / 1000.0;
            _durationCells?.Get(route, pool).Add(seconds);
            if (RequestDuration.Enabled)
            {
                RequestDuration.Record(seconds, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("pool", pool));
            }
        }
    }

    /// <summary>One try of one backend.</summary>
    internal void RecordAttempt(string pool, BackendState backend, in ForwardResult result, double connectMs, double responseMs)
    {
        var name = backend.DisplayName;
        var poolTag = new KeyValuePair<string, object?>("pool", pool);
        var backendTag = new KeyValuePair<string, object?>("backend", name);
        var outcome = result.Succeeded && result.Held is null ? "ok" : result.Held is not null ? Status(result.UpstreamStatus) : ErrorCodes.Code(result.Error);
        _attemptCells?.Get(pool, name, outcome).Add(1);
        if (UpstreamAttempts.Enabled)
        {
            UpstreamAttempts.Add(1, poolTag, backendTag, new KeyValuePair<string, object?>("result", outcome));
        }
        if (connectMs >= 0)
        {
            // Only for a new connection: rare enough to go through the listener.
            ConnectDuration.Record(connectMs / 1000.0, poolTag, backendTag);
        }
        if (responseMs >= 0)
        {
            _responseCells?.Get(pool, name).Add(responseMs / 1000.0);
            if (ResponseDuration.Enabled)
            {
                ResponseDuration.Record(responseMs / 1000.0, poolTag, backendTag);
            }
        }
    }

    internal void RecordRetry(string route, FulcrumError reason) =>
        Retries.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("reason", reason == FulcrumError.None ? "status" : ErrorCodes.Code(reason)));

    private void OnHealthChanged(HealthEvent e)
    {
        var pool = new KeyValuePair<string, object?>("pool", e.Pool);
        var backend = new KeyValuePair<string, object?>("backend", e.Backend);
        HealthTransitions.Add(1, pool, backend, new KeyValuePair<string, object?>("to", HealthNames.Of(e.To)));
        if (e.To == HealthStatus.Ejected)
        {
            Ejections.Add(1, pool, backend);
        }
    }

    private void OnProbed(PoolState pool, BackendState backend, ProbeResult result) =>
        HealthProbes.Add(1, new KeyValuePair<string, object?>("pool", pool.Name), new KeyValuePair<string, object?>("backend", backend.DisplayName), new KeyValuePair<string, object?>("result", result.Success ? "success" : "failure"));

    private IEnumerable<Measurement<int>> ObserveUp()
    {
        foreach (var pool in _runtime.Current.Pools.Values)
        {
            var available = pool.Available;
            foreach (var b in pool.Backends)
            {
                yield return new Measurement<int>(Array.IndexOf(available, b) >= 0 ? 1 : 0, Tags(pool, b));
            }
        }
    }

    private IEnumerable<Measurement<int>> ObserveHealth()
    {
        foreach (var pool in _runtime.Current.Pools.Values)
        {
            foreach (var b in pool.Backends)
            {
                var status = b.Health.Status;
                foreach (var s in Enum.GetValues<HealthStatus>())
                {
                    yield return new Measurement<int>(s == status ? 1 : 0, new KeyValuePair<string, object?>("pool", pool.Name), new KeyValuePair<string, object?>("backend", b.DisplayName), new KeyValuePair<string, object?>("status", HealthNames.Of(s)));
                }
            }
        }
    }

    private IEnumerable<Measurement<int>> ObserveUnchecked() => PerBackend(static b => b.Unchecked ? 1 : 0);

    private IEnumerable<Measurement<int>> ObserveTunnels() => PerBackend(static b => b.Tunnels);

    private IEnumerable<Measurement<int>> ObserveInFlight() => PerBackend(static b => b.InFlight);

    /// <summary>One measurement per backend of every pool, labelled by pool and backend.</summary>
    private IEnumerable<Measurement<int>> PerBackend(Func<BackendState, int> value)
    {
        foreach (var pool in _runtime.Current.Pools.Values)
        {
            foreach (var b in pool.Backends)
            {
                yield return new Measurement<int>(value(b), Tags(pool, b));
            }
        }
    }

    private IEnumerable<Measurement<long>> ObserveBudget()
    {
        foreach (var pool in _runtime.Current.Pools.Values)
        {
            yield return new Measurement<long>(pool.RetryBudgetExhausted, new KeyValuePair<string, object?>("pool", pool.Name));
        }
    }

    private IEnumerable<Measurement<int>> ObserveConnections()
    {
        lock (_connections)
        {
            return [.. _connections.Select(c => new Measurement<int>(c.Value, new KeyValuePair<string, object?>("listener", c.Key)))];
        }
    }

    private static KeyValuePair<string, object?>[] Tags(PoolState pool, BackendState b) =>
        [new("pool", pool.Name), new("backend", b.DisplayName)];

    private static string[] BuildStatusText()
    {
        var text = new string[600];
        for (var i = 0; i < text.Length; i++)
        {
            text[i] = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return text;
    }

    public void Dispose()
    {
        _runtime.Health.Changed -= OnHealthChanged;
        _runtime.Health.Probed -= OnProbed;
        Meter.Dispose();
    }
}
