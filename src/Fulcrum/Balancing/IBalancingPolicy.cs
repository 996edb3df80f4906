using Fulcrum.Runtime;

namespace Fulcrum.Balancing;

/// <summary>
/// Chooses one backend among the candidates that may take this request. Candidates come in
/// configuration order and are never empty. Implementations are shared by every pool that names
/// them, keep their per-pool state on <see cref="PoolState"/>, and must be safe to call from many
/// threads at once without taking a lock the hot path can queue on (round robin is the one
/// exception, and its lock covers a few arithmetic operations).
/// </summary>
public interface IBalancingPolicy
{
    string Name { get; }

    BackendState Pick(PoolState pool, ReadOnlySpan<BackendState> candidates);
}
