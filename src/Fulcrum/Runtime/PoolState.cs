using Fulcrum.Balancing;
using Fulcrum.Configuration;

namespace Fulcrum.Runtime;

/// <summary>
/// A pool's long-lived state: its backends, its balancing policy and its one upstream
/// <see cref="HttpMessageInvoker"/> (so upstream keep-alive connections are pooled per pool).
/// </summary>
public sealed class PoolState : IDisposable
{
    private readonly BackendState[] _backends;
    private readonly BackendState[] _available;
    private int _tieBreak;

    internal PoolState(PoolConfig config, HttpMessageInvoker invoker)
    {
        Config = config;
        Invoker = invoker;
        Policy = BalancingPolicies.Get(config.Balancing);
        _backends = [.. config.Backends.Select(b => new BackendState(config.Name, b))];
        _available = _backends;
    }

    public string Name => Config.Name;

    public PoolConfig Config { get; }

    public IBalancingPolicy Policy { get; }

    public HttpMessageInvoker Invoker { get; }

    /// <summary>Every backend of the pool, in configuration order.</summary>
    public IReadOnlyList<BackendState> Backends => _backends;

    /// <summary>
    /// The backends that may take new traffic now, in configuration order. Published whole: a
    /// request reads this array once and never sees it change under it.
    /// </summary>
    public BackendState[] Available => _available;

    internal object BalancerLock { get; } = new();

    internal int NextTieBreak() => Interlocked.Increment(ref _tieBreak);

    public BackendState? Find(string nameOrAddress)
    {
        foreach (var backend in Backends)
        {
            if (backend.Config.Name == nameOrAddress || string.Equals(backend.Address, nameOrAddress, StringComparison.OrdinalIgnoreCase))
            {
                return backend;
            }
        }
        return null;
    }

    public void Dispose() => Invoker.Dispose();
}
