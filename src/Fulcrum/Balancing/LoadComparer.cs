using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>Compares backends by in-flight load per unit of weight, without division.</summary>
internal static class LoadComparer
{
    /// <summary>
    /// True when <paramref name="a"/> would be less loaded than <paramref name="b"/> after taking
    /// one more request: (inFlightA + 1) / weightA &lt; (inFlightB + 1) / weightB.
    /// The +1 makes weights matter even when both are idle.
    /// </summary>
    public static bool IsLessLoaded(BackendState a, BackendState b) =>
        (a.InFlight + 1L) * b.Weight < (b.InFlight + 1L) * a.Weight;
}
