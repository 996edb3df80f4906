using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>
/// The first candidate in configuration order: an active backend with backups behind it. Traffic
/// moves to the next only when the ones before it may not take traffic.
/// </summary>
internal sealed class FirstPolicy : IBalancingPolicy
{
    public string Name => BalancingPolicies.First;

    public BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates) => candidates[0];
}
