using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>Compares backends by in-flight load per unit of weight, without division.</summary>
internal static class LoadComparer
{
    /// <summary>
    /// True when <paramref name="a"/> carries strictly less load per unit of weight than
    /// <paramref name="b"/>: inFlightA / weightA &lt; inFlightB / weightB. Idle backends tie, and
    /// the caller breaks ties by a weighted draw, so at low load traffic follows the weights and
    /// at high load it follows the free capacity.
    /// </summary>
    public static bool IsLessLoaded(BackendState a, BackendState b) =>
        (long)a.InFlight * b.EffectiveWeight < (long)b.InFlight * a.EffectiveWeight;
}
