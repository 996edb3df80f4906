using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>A candidate drawn at random in proportion to its weight.</summary>
internal sealed class RandomPolicy : IBalancingPolicy
{
    public string Name => BalancingPolicies.Random;

    public BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates) =>
        candidates[WeightedRandom.Index(candidates, exclude: -1)];
}
