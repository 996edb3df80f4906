using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>
/// The backend with the fewest requests in flight relative to its weight. Backends that tie (all
/// idle, say) share the traffic by a draw in proportion to their weights, so sequential traffic
/// still follows the weights instead of landing on the first or the heaviest backend every time.
/// </summary>
/// <remarks>
/// In-flight counts move on other threads while a pick runs. Each candidate's count and weight
/// are read once into a snapshot and every comparison uses it: comparing live counters could
/// find a best candidate that then fails to tie with itself (its count having moved), leaving
/// no candidate at all.
/// </remarks>
internal sealed class LeastRequestsPolicy : IBalancingPolicy
{
    private const int MaxStackCandidates = 128;

    public string Name => BalancingPolicies.LeastRequests;

    public BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates)
    {
        if (candidates.Length == 1)
        {
            return candidates[0];
        }
        var n = candidates.Length;
        Span<long> load = n <= MaxStackCandidates ? stackalloc long[n] : new long[n];
        Span<long> weight = n <= MaxStackCandidates ? stackalloc long[n] : new long[n];
        for (var i = 0; i < n; i++)
        {
            load[i] = candidates[i].InFlight;
            weight[i] = candidates[i].EffectiveWeight;
        }

        // Least load per unit of weight: load[i] / weight[i] < load[best] / weight[best].
        var best = 0;
        for (var i = 1; i < n; i++)
        {
            if (load[i] * weight[best] < load[best] * weight[i])
            {
                best = i;
            }
        }

        // Every candidate exactly as loaded as the best (the best among them), drawn by weight.
        var total = 0L;
        for (var i = 0; i < n; i++)
        {
            if (load[i] * weight[best] == load[best] * weight[i])
            {
                total += weight[i];
            }
        }
#pragma warning disable CA5394 // balancing needs spread, not unpredictability
        var r = Random.Shared.NextInt64(total);
#pragma warning restore CA5394
        for (var i = 0; i < n; i++)
        {
            if (load[i] * weight[best] == load[best] * weight[i])
            {
                r -= weight[i];
                if (r < 0)
                {
                    return candidates[i];
                }
            }
        }
        return candidates[best];
    }
}
