namespace Fulcrum.Configuration;

/// <summary>A named group of backends with one balancing policy.</summary>
public sealed record PoolConfig(
    string Name,
    string Balancing,
    EquatableList<BackendConfig> Backends,
    TimeoutsConfig Timeouts,
    HostHeaderMode HostHeader)
{
    public HealthConfig Health { get; init; } = HealthConfig.Default;

    /// <summary>How long a newly healthy backend's weight takes to ramp from 10% to 100%; zero for none.</summary>
    public TimeSpan SlowStart { get; init; }

    public NoneHealthyMode WhenNoneHealthy { get; init; } = NoneHealthyMode.Fail;

    /// <summary>The retry settings of the pool's routes, unless a route sets its own.</summary>
    public RetryConfig Retries { get; init; } = RetryConfig.Unset;

    public RetryBudgetConfig RetryBudget { get; init; } = RetryBudgetConfig.Default;

    public LimitsConfig Limits { get; init; } = LimitsConfig.None;

    /// <summary>
    /// How long the open tunnels of a draining or disabled backend may stay before Fulcrum closes
    /// them (a WebSocket close 1001 to both sides); null for no limit: they end when their peers end them.
    /// </summary>
    public TimeSpan? DrainTimeout { get; init; }

    /// <summary>TLS to the backends (<c>pools[].tls</c>); null: cleartext.</summary>
    public UpstreamTlsConfig? Tls { get; init; }
}

/// <summary>
/// How much a pool takes on: requests in flight and upstream connections per backend, and how many
/// requests may wait for room, for how long. Zero means no limit. Beyond them: 503 pool_saturated.
/// </summary>
public sealed record LimitsConfig(int MaxRequests, int MaxConnections, int MaxPending, TimeSpan QueueTimeout)
{
    public const int DefaultUpstreamResponseHeaders = 64 * 1024;

    public static LimitsConfig None { get; } = new(0, 0, 0, TimeSpan.FromSeconds(1));

    /// <summary>
    /// The most a backend's response head may take, interim (1xx) heads before it included, and
    /// so may its trailers: beyond it, 502 upstream_protocol_error.
    /// </summary>
    public int UpstreamResponseHeaders { get; init; } = DefaultUpstreamResponseHeaders;

    public bool Any => MaxRequests > 0;
}

/// <summary>What the Host header sent to a backend is.</summary>
public enum HostHeaderMode
{
    /// <summary>The client's Host header, unchanged (the default, as nginx with <c>proxy_set_header Host $host</c>).</summary>
    Preserve,

    /// <summary>The backend's own <c>host:port</c>, for backends that route on their own name.</summary>
    Backend,
}

/// <summary>One backend instance. Its identity is its pool plus <see cref="Address"/> as written.</summary>
public sealed record BackendConfig(string Address, HostPort Endpoint, int Weight, string? Name)
{
    /// <summary>This backend's own limit of requests in flight, over the pool's; 0 for the pool's.</summary>
    public int MaxRequests { get; init; }

    public const int MinWeight = 1;
    public const int MaxWeight = 1000;
}
