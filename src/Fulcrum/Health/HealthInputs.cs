namespace Fulcrum.Health;

/// <summary>
/// What a backend's health is computed from. Mutable, and touched only by
/// <see cref="HealthAuthority"/> under the pool's health lock.
/// </summary>
internal sealed class HealthInputs
{
    /// <summary>Active verdict: null until a probe settles it (pending), then up or down.</summary>
    public bool? ActiveUp { get; set; }

    public int ProbeSuccesses { get; set; }

    public int ProbeFailures { get; set; }

    public ProbeResult? LastProbe { get; set; }

    public DateTimeOffset? EjectedUntil { get; set; }

    public string? EjectionReason { get; set; }

    /// <summary>Ejections so far; each lasts this many times the base ejection, up to the cap.</summary>
    public int Ejections { get; set; }

    public DateTimeOffset? LastEjectionEnd { get; set; }

    public AdminOverride? Override { get; set; }

    /// <summary>Fires when an ejection or an override lapses, so the status is recomputed on time.</summary>
    public ITimer? Timer { get; set; }
}
