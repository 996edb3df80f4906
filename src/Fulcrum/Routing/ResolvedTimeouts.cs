using Fulcrum.Configuration;

namespace Fulcrum.Routing;

/// <summary>The timeouts a route applies: its own, else its pool's, else the built-in defaults.</summary>
public sealed record ResolvedTimeouts(TimeSpan Connect, TimeSpan Response, TimeSpan Idle)
{
    public static ResolvedTimeouts Default { get; } = new(TimeoutsConfig.DefaultConnect, TimeoutsConfig.DefaultResponse, TimeoutsConfig.DefaultIdle);

    public static ResolvedTimeouts Resolve(TimeoutsConfig route, TimeoutsConfig pool) => new(
        route.Connect ?? pool.Connect ?? TimeoutsConfig.DefaultConnect,
        route.Response ?? pool.Response ?? TimeoutsConfig.DefaultResponse,
        route.Idle ?? pool.Idle ?? TimeoutsConfig.DefaultIdle);
}
