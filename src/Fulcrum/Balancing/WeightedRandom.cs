using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

internal static class WeightedRandom
{
    /// <summary>
    /// The index of a candidate drawn in proportion to its weight, never <paramref name="exclude"/>
    /// (pass -1 to allow all). Two passes over the candidates, no allocation.
    /// </summary>
    public static int Index(ReadOnlySpan<BackendState> candidates, int exclude)
    {
        var total = 0L;
        for (var i = 0; i < candidates.Length; i++)
        {
            if (i != exclude)
            {
                total += candidates[i].EffectiveWeight;
            }
        }
        // Random.Shared is thread-safe and lock-free (a per-thread generator).
#pragma warning disable CA5394 // balancing needs spread, not unpredictability
        var r = Random.Shared.NextInt64(total);
#pragma warning restore CA5394
        for (var i = 0; i < candidates.Length; i++)
        {
            if (i == exclude)
            {
                continue;
            }
            r -= candidates[i].EffectiveWeight;
            if (r < 0)
            {
                return i;
            }
        }
        return exclude == candidates.Length - 1 ? candidates.Length - 2 : candidates.Length - 1;
    }
}
