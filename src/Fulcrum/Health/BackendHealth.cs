namespace Fulcrum.Health;

/// <summary>
/// A backend's health: one immutable value, computed by <see cref="HealthAuthority"/> alone and
/// read by everything else (the router, the error bodies, logs, and later the admin API, the CLI
/// and metrics), so they can never disagree.
/// </summary>
/// <param name="Status">The state the router acts on.</param>
/// <param name="Reason">Why, in words a person can act on.</param>
/// <param name="Since">When the backend entered this status.</param>
/// <param name="Source">Which input decided it.</param>
/// <param name="LastProbe">The last active probe, if any.</param>
/// <param name="Override">The admin decision in force, if any.</param>
/// <param name="EjectedUntil">When a passive ejection ends, if one is in force.</param>
public sealed record BackendHealth(
    HealthStatus Status,
    string Reason,
    DateTimeOffset Since,
    HealthSource Source,
    ProbeResult? LastProbe,
    AdminOverride? Override,
    DateTimeOffset? EjectedUntil)
{
    public bool TakesTraffic => Status == HealthStatus.Healthy;
}
