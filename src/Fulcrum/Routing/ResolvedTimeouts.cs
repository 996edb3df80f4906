using Fulcrum.Configuration;

namespace Fulcrum.Routing;

/// <summary>The timeouts a route applies: its own, else its pool's, else the built-in defaults.</summary>
public sealed record ResolvedTimeouts(TimeSpan Connect, TimeSpan Response, TimeSpan Idle)
{
    /// <summary>How long an open tunnel may stay silent both ways.</summary>
    public TimeSpan TunnelIdle { get; init; } = TimeoutsConfig.DefaultTunnelIdle;

    /// <summary>The longest an open tunnel may live; null for no limit.</summary>
    public TimeSpan? TunnelMax { get; init; }

    public static ResolvedTimeouts Default { get; } = new(TimeoutsConfig.DefaultConnect, TimeoutsConfig.DefaultResponse, TimeoutsConfig.DefaultIdle);

    public static ResolvedTimeouts Resolve(TimeoutsConfig route, TimeoutsConfig pool) => new(
        route.Connect ?? pool.Connect ?? TimeoutsConfig.DefaultConnect,
        route.Response ?? pool.Response ?? TimeoutsConfig.DefaultResponse,
        route.Idle ?? pool.Idle ?? TimeoutsConfig.DefaultIdle)
    {
        TunnelIdle = route.TunnelIdle ?? pool.TunnelIdle ?? TimeoutsConfig.DefaultTunnelIdle,
        TunnelMax = route.TunnelMax ?? pool.TunnelMax,
    };
}
