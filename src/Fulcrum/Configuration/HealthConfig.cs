namespace Fulcrum.Configuration;

/// <summary>A pool's health settings: active probes (optional) and passive failure detection.</summary>
public sealed record HealthConfig(ActiveHealthConfig? Active, PassiveHealthConfig Passive)
{
    public static HealthConfig Default { get; } = new(null, PassiveHealthConfig.Default);
}

/// <summary>How a probe checks a backend.</summary>
public enum ProbeType
{
    /// <summary>An HTTP request whose status (and optionally body) must match.</summary>
    Http,

    /// <summary>A TCP connect, nothing more.</summary>
    Tcp,
}

/// <summary>Active health checks: Fulcrum probes each backend on a timer.</summary>
public sealed record ActiveHealthConfig(
    ProbeType Type,
    string Path,
    string Method,
    string? Host,
    EquatableList<StatusRange> ExpectStatus,
    string? ExpectBody,
    int? Port,
    TimeSpan Interval,
    TimeSpan FastInterval,
    TimeSpan Timeout,
    int HealthyAfter,
    int UnhealthyAfter,
    TimeSpan Jitter)
{
    public static TimeSpan DefaultInterval { get; } = TimeSpan.FromSeconds(5);
    public static TimeSpan DefaultTimeout { get; } = TimeSpan.FromSeconds(2);
    public const int DefaultHealthyAfter = 2;
    public const int DefaultUnhealthyAfter = 3;

    /// <summary>Statuses a probe accepts by default: 200 to 399.</summary>
    public static EquatableList<StatusRange> DefaultExpectStatus { get; } = new([new StatusRange(200, 399)]);

    public bool Accepts(int status)
    {
        foreach (var range in ExpectStatus)
        {
            if (status >= range.From && status <= range.To)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The accepted statuses as written: "200-399" or "200, 204".</summary>
    public string ExpectedText => string.Join(", ", ExpectStatus);
}

/// <summary>An inclusive range of HTTP statuses; a single status is a range of one.</summary>
public readonly record struct StatusRange(int From, int To)
{
    public override string ToString() => From == To ? From.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{From}-{To}";
}

/// <summary>
/// Passive health: failures seen in real traffic eject a backend for a while, longer each time.
/// </summary>
public sealed record PassiveHealthConfig(
    bool Enabled,
    int ConsecutiveFailures,
    int Consecutive5xx,
    EquatableList<int> FailureStatuses,
    TimeSpan Ejection,
    TimeSpan MaxEjection,
    int MaxEjectedPercent)
{
    public static PassiveHealthConfig Default { get; } = new(
        true, 5, 5, new([502, 503, 504]), TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(5), 50);
}

/// <summary>What a pool does when no backend may take traffic.</summary>
public enum NoneHealthyMode
{
    /// <summary>503 no_healthy_backend, with each backend's state in the body.</summary>
    Fail,

    /// <summary>Send traffic to every backend not taken out by an admin (fail open, as AWS ALB does).</summary>
    RouteAnyway,
}
