namespace Fulcrum.Health;

/// <summary>The one state a backend is in. Only <see cref="Healthy"/> takes new traffic.</summary>
public enum HealthStatus
{
    /// <summary>New (or its address changed): probed at once, not routed to until a probe passes.</summary>
    Pending,

    /// <summary>Takes traffic.</summary>
    Healthy,

    /// <summary>Active probes failed <c>unhealthy_after</c> times in a row.</summary>
    Unhealthy,

    /// <summary>Real traffic failed too often; out until its ejection ends.</summary>
    Ejected,

    /// <summary>An admin is taking it out: no new requests, those in flight finish.</summary>
    Draining,

    /// <summary>An admin took it out.</summary>
    Disabled,
}

/// <summary>Which input decided a backend's status.</summary>
public enum HealthSource
{
    Config,
    Active,
    Passive,
    Admin,
}

/// <summary>The lower-case names used in logs, the admin API and metrics.</summary>
public static class HealthNames
{
    public static string Of(HealthStatus status) => status switch
    {
        HealthStatus.Pending => "pending",
        HealthStatus.Healthy => "healthy",
        HealthStatus.Unhealthy => "unhealthy",
        HealthStatus.Ejected => "ejected",
        HealthStatus.Draining => "draining",
        HealthStatus.Disabled => "disabled",
        _ => throw new ArgumentOutOfRangeException(nameof(status)),
    };

    public static string Of(HealthSource source) => source switch
    {
        HealthSource.Config => "config",
        HealthSource.Active => "active",
        HealthSource.Passive => "passive",
        HealthSource.Admin => "admin",
        _ => throw new ArgumentOutOfRangeException(nameof(source)),
    };
}
