using System.Collections.Frozen;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Fulcrum.Routing;

namespace Fulcrum.Runtime;

/// <summary>
/// Owns the long-lived pool and backend state and publishes snapshots of it. The request path
/// reads <see cref="Current"/> without a lock; a new configuration builds a whole new snapshot and
/// publishes it with one volatile write.
/// </summary>
public sealed class FulcrumRuntime : IDisposable
{
    private readonly RuntimeSnapshot _current;

    public FulcrumRuntime(FulcrumConfig config, TimeProvider? time = null)
    {
        Time = time ?? TimeProvider.System;
        _current = Build(config);
    }

    public TimeProvider Time { get; }

    public RuntimeSnapshot Current => _current;

    private static RuntimeSnapshot Build(FulcrumConfig config)
    {
        var pools = new Dictionary<string, PoolState>(StringComparer.Ordinal);
        foreach (var pool in config.Pools)
        {
            pools[pool.Name] = new PoolState(pool, UpstreamHandlerFactory.CreateInvoker());
        }
        var frozen = pools.ToFrozenDictionary(StringComparer.Ordinal);
        return new RuntimeSnapshot(config, RouteTable.Build(config, frozen), frozen);
    }

    public void Dispose()
    {
        foreach (var pool in Current.Pools.Values)
        {
            pool.Dispose();
        }
    }
}
