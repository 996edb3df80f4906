using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>
/// Smooth weighted round robin, as nginx does it: each pick adds every candidate's weight to its
/// running score, takes the highest, and subtracts the total from the winner. Weights 5:1:1 give
/// a,a,b,a,c,a,a rather than a burst of five; equal weights give an exact rotation.
/// </summary>
internal sealed class RoundRobinPolicy : IBalancingPolicy
{
    public string Name => BalancingPolicies.RoundRobin;

    public BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates)
    {
        if (candidates.Length == 1)
        {
            return candidates[0];
        }
        // The scores live on the backends and are only touched under the pool's lock; the work
        // inside is a few additions per candidate, so the lock is held for nanoseconds.
        lock (pool.BalancerLock)
        {
            BackendState? best = null;
            var total = 0L;
            foreach (var backend in candidates)
            {
                var weight = backend.EffectiveWeight;
                backend.SmoothWeight += weight;
                total += weight;
                if (best is null || backend.SmoothWeight > best.SmoothWeight)
                {
                    best = backend;
                }
            }
            best!.SmoothWeight -= total;
            return best;
        }
    }
}
