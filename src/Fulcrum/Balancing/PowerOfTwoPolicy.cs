using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>
/// Power of two choices: two distinct candidates drawn at random in proportion to their weights,
/// and the one with less load per unit of weight wins; on a tie the first draw wins, so at low
/// load traffic follows the weights. It spreads almost as well as least requests but reads only
/// two counters and shares no state between requests (Mitzenmacher, 2001).
/// </summary>
internal sealed class PowerOfTwoPolicy : IBalancingPolicy
{
    public string Name => BalancingPolicies.PowerOfTwo;

    public BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates)
    {
        if (candidates.Length == 1)
        {
            return candidates[0];
        }
        var first = WeightedRandom.Index(candidates, exclude: -1);
        var second = WeightedRandom.Index(candidates, exclude: first);
        var a = candidates[first];
        var b = candidates[second];
        return LoadComparer.IsLessLoaded(b, a) ? b : a; // the first draw was random: ties stay fair
    }
}
