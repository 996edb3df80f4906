namespace Fulcrum.Health;

/// <summary>One change of a backend's status: from, to, why, decided by what, and when.</summary>
public sealed record HealthEvent(
    long Sequence,
    string Pool,
    string Backend,
    HealthStatus From,
    HealthStatus To,
    string Reason,
    HealthSource Source,
    DateTimeOffset At);
