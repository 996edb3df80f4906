using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>
/// The backend with the fewest requests in flight relative to its weight. Backends that tie (all
/// idle, say) share the traffic by a draw in proportion to their weights, so sequential traffic
/// still follows the weights instead of landing on the first or the heaviest backend every time.
/// </summary>
internal sealed class LeastRequestsPolicy : IBalancingPolicy
{
    private const int MaxStackCandidates = 256;

    public string Name => BalancingPolicies.LeastRequests;

    public BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates)
    {
        if (candidates.Length == 1)
        {
            return candidates[0];
        }
        var best = candidates[0];
        for (var i = 1; i < candidates.Length; i++)
        {
            if (LoadComparer.IsLessLoaded(candidates[i], best))
            {
                best = candidates[i];
            }
        }

        // Collect every candidate as loaded as the best, then draw among them by weight.
        Span<int> tied = candidates.Length <= MaxStackCandidates ? stackalloc int[candidates.Length] : new int[candidates.Length];
        var count = 0;
        var total = 0L;
        for (var i = 0; i < candidates.Length; i++)
        {
            if (!LoadComparer.IsLessLoaded(best, candidates[i]))
            {
                tied[count++] = i;
                total += candidates[i].EffectiveWeight;
            }
        }
        if (count == 1)
        {
            return best;
        }
#pragma warning disable CA5394 // balancing needs spread, not unpredictability
        var r = Random.Shared.NextInt64(total);
#pragma warning restore CA5394
        for (var i = 0; i < count; i++)
        {
            r -= candidates[tied[i]].EffectiveWeight;
            if (r < 0)
            {
                return candidates[tied[i]];
            }
        }
        return candidates[tied[count - 1]];
    }
}
