using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>
/// The backend with the fewest requests in flight relative to its weight. Ties are broken by a
/// rotating starting point, so idle backends take turns instead of the first one taking all.
/// </summary>
internal sealed class LeastRequestsPolicy : IBalancingPolicy
{
    public string Name => BalancingPolicies.LeastRequests;

    public BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates)
    {
        if (candidates.Length == 1)
        {
            return candidates[0];
        }
        var start = (int)((uint)pool.NextTieBreak() % (uint)candidates.Length);
        var best = candidates[start];
        for (var i = 1; i < candidates.Length; i++)
        {
            var candidate = candidates[(start + i) % candidates.Length];
            if (LoadComparer.IsLessLoaded(candidate, best))
            {
                best = candidate;
            }
        }
        return best;
    }
}
