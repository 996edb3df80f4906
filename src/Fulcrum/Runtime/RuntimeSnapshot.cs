using System.Collections.Frozen;
using Fulcrum.Configuration;
using Fulcrum.Routing;

namespace Fulcrum.Runtime;

/// <summary>
/// An immutable view of routes and pools. A request reads <see cref="FulcrumRuntime.Current"/>
/// once and uses this object for its whole life, so a reload never changes it mid-request.
/// </summary>
public sealed class RuntimeSnapshot
{
    internal RuntimeSnapshot(FulcrumConfig config, RouteTable routes, FrozenDictionary<string, PoolState> pools)
    {
        Config = config;
        Routes = routes;
        Pools = pools;
    }

    public FulcrumConfig Config { get; }

    public RouteTable Routes { get; }

    public FrozenDictionary<string, PoolState> Pools { get; }
}
