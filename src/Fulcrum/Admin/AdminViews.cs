using Fulcrum.Admin;
using Fulcrum.Health;
using Fulcrum.Runtime;

namespace Fulcrum.Admin;

/// <summary>A backend as the admin API shows it: its one health value and its counters.</summary>
public sealed record BackendView(
    string Name,
    string Address,
    string Status,
    string Reason,
    DateTimeOffset Since,
    string Source,
    bool TakesTraffic,
    int Weight,
    double EffectiveWeight,
    int InFlight,
    int Tunnels,
    long Requests,
    long Failures,
    ProbeView? LastProbe,
    OverrideView? Override,
    DateTimeOffset? EjectedUntil,
    bool Checked)
{
    /// <summary>The source shown for a backend that is healthy by default, never proven (<see cref="BackendState.Unchecked"/>).</summary>
    public const string UncheckedSource = "unchecked";

    public static BackendView Of(BackendState b)
    {
        var h = b.Health;
        var isUnchecked = b.Unchecked;
        return new BackendView(
            b.DisplayName,
            b.Address,
            HealthNames.Of(h.Status),
            isUnchecked ? $"unchecked, healthy by default: {h.Reason}; no request answered yet" : h.Reason,
            h.Since,
            isUnchecked ? UncheckedSource : HealthNames.Of(h.Source),
            h.TakesTraffic,
            b.Weight,
            Math.Round(b.EffectiveWeight / (double)BackendState.WeightScale, 2),
            b.InFlight,
            b.Tunnels,
            b.Requests,
            b.Failures,
            h.LastProbe is { } p ? ProbeView.Of(p) : null,
            h.Override is { } o ? new OverrideView(AdminOverride.Name(o.Kind), o.Reason, o.By, o.Since, o.Expires) : null,
            h.EjectedUntil,
            !isUnchecked);
    }
}

public sealed record ProbeView(bool Success, string Detail, int? Status, double LatencyMs, DateTimeOffset At)
{
    public static ProbeView Of(ProbeResult p) => new(p.Success, p.Detail, p.Status, Math.Round(p.Latency.TotalMilliseconds, 3), p.At);
}

public sealed record OverrideView(string Kind, string Reason, string By, DateTimeOffset Since, DateTimeOffset? Expires);

public sealed record PoolView(
    string Name,
    string Balancing,
    bool ActiveChecks,
    int Available,
    bool FailingOpen,
    int ActiveRequests,
    IReadOnlyDictionary<string, long> Retries,
    long RetryBudgetExhausted,
    int Pending,
    long Saturated,
    IReadOnlyList<BackendView> Backends)
{
    public static PoolView Of(PoolState pool) => new(
        pool.Name,
        pool.Config.Balancing,
        pool.Config.Health.Active is not null,
        pool.Available.Length,
        pool.FailingOpen,
        pool.ActiveRequests,
        pool.RetriesByReason(),
        pool.RetryBudgetExhausted,
        pool.Pending,
        pool.Saturated,
        [.. pool.Backends.Select(BackendView.Of)]);
}

/// <summary>A health change or an audit event, as the events endpoints show them.</summary>
public sealed record EventView(string Type, long Sequence, DateTimeOffset At, string Pool, string Backend, string? From, string? To, string? Action, string? By, string Reason, string? Source)
{
    public static EventView Of(HealthEvent e) =>
        new("health", e.Sequence, e.At, e.Pool, e.Backend, HealthNames.Of(e.From), HealthNames.Of(e.To), null, null, e.Reason, HealthNames.Of(e.Source));

    public static EventView Of(AuditEvent e) =>
        new("audit", e.Sequence, e.At, e.Pool, e.Backend, null, null, e.Action, e.By, e.Reason, null);
}

public sealed record ErrorView(string Error, string Message);
