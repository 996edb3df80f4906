using Fulcrum.Configuration;
using Fulcrum.Runtime;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Health;

/// <summary>
/// The only writer of backend health. Active probes, passive failures seen in traffic, admin
/// overrides and the timers that end ejections and overrides all report here; the authority
/// updates the backend's inputs, computes its one <see cref="BackendHealth"/> from them, and
/// publishes it. Everything else reads that value.
/// </summary>
/// <remarks>
/// Ordering: every transition of a pool's backends runs under that pool's health lock, and
/// inside it the authority (1) updates the inputs, (2) publishes the new health, (3) appends
/// the history event and (4) republishes the pool's available set. A reader holding the same
/// lock (<see cref="Sample"/>) therefore always sees the router's set, the health value and the
/// end of the history agree. The request path never takes the lock: it reads the published
/// values, and reports successes through counters without locking (see ReportTraffic).
/// Precedence, highest first: admin override, passive ejection, active probes, configuration.
/// </remarks>
public sealed partial class HealthAuthority : IDisposable
{
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Func<IEnumerable<PoolState>> _pools;
    private long _sequence;

    /// <param name="time">The clock for timestamps and timers.</param>
    /// <param name="logger">Where changes are logged.</param>
    /// <param name="pools">Every pool, for the timers to stop on dispose.</param>
    public HealthAuthority(TimeProvider time, ILogger logger, Func<IEnumerable<PoolState>> pools)
    {
        _time = time;
        _logger = logger;
        _pools = pools;
    }

    /// <summary>Called, outside any lock, after an admin override was set, cleared or lapsed (the runtime saves its state file).</summary>
    internal Action? OverridesChanged { get; set; }

    /// <summary>
    /// Raised, under the pool's health lock, for every status change: handlers must be quick and
    /// must not call back into the authority.
    /// </summary>
    public event Action<HealthEvent>? Changed;

    /// <summary>Raised after every probe result is applied (for metrics); handlers must be quick.</summary>
    public event Action<PoolState, BackendState, ProbeResult>? Probed;

    /// <summary>Asks for a probe of a backend now (wired to the active prober).</summary>
    internal Action<PoolState, BackendState>? ProbeNow { get; set; }

    /// <summary>
    /// Gives a backend of <paramref name="pool"/> its first health: pending when the pool has
    /// active checks (the prober probes it at once), else healthy. <paramref name="restored"/> is an
    /// admin override kept from before a restart.
    /// </summary>
    internal void Attach(PoolState pool, BackendState backend, AdminOverride? restored, bool rampUp)
    {
        lock (pool.HealthLock)
        {
            if (restored is not null && restored.IsActive(_time.GetUtcNow()))
            {
                backend.Inputs.Override = restored;
                ScheduleTimer(pool, backend);
            }
            backend.SkipFirstRamp = !rampUp;
            Recompute(pool, backend, initial: true, rampUp);
        }
    }

    /// <summary>Adds a backend to a pool at runtime; returns the existing one when its address is already there.</summary>
    internal BackendState Add(PoolState pool, BackendConfig config, out bool added)
    {
        lock (pool.HealthLock)
        {
            foreach (var existing in pool.Backends)
            {
                if (string.Equals(existing.Address, config.Address, StringComparison.OrdinalIgnoreCase))
                {
                    added = false;
                    return existing;
                }
            }
            var backend = new BackendState(pool.Name, config, _time, pool.Config.SlowStart);
            pool.AddBackend(backend);
            Recompute(pool, backend, initial: true, rampUp: true);
            added = true;
            return backend;
        }
    }

    /// <summary>Takes a backend out of its pool: no new traffic; requests in flight keep their reference and finish.</summary>
    internal void Remove(PoolState pool, BackendState backend)
    {
        lock (pool.HealthLock)
        {
            backend.DetachedAt = _time.GetUtcNow();
            backend.Detached = true;
            backend.Inputs.Timer?.Dispose();
            backend.Inputs.Timer = null;
            pool.RemoveBackend(backend);
            pool.RepublishAvailable();
        }
    }

    /// <summary>
    /// Gives a pool the backends of a reloaded configuration, in order (kept ones keep their state;
    /// new ones are not yet attached), and republishes its available set.
    /// </summary>
    internal void ReplaceBackends(PoolState pool, BackendState[] backends)
    {
        lock (pool.HealthLock)
        {
            pool.ReplaceBackends(backends);
            pool.RepublishAvailable();
        }
    }

    /// <summary>
    /// Works a backend's status out again from its inputs, after its pool's health settings
    /// changed (active checks turned off, say). A status that does not change records nothing.
    /// </summary>
    internal void Reevaluate(PoolState pool, BackendState backend)
    {
        lock (pool.HealthLock)
        {
            if (!backend.Detached)
            {
                // Without active checks a lapsed ejection ends on time alone; with them it waited
                // for a probe that will now never come.
                var now = _time.GetUtcNow();
                if (backend.Inputs.EjectedUntil is { } until && now >= until && pool.Config.Health.Active is null)
                {
                    EndEjection(backend.Inputs, now);
                }
                ScheduleTimer(pool, backend);
                Recompute(pool, backend);
            }
        }
    }

    /// <summary>The result of an active probe.</summary>
    public void ReportProbe(PoolState pool, BackendState backend, ProbeResult result)
    {
        var active = pool.Config.Health.Active;
        if (active is null)
        {
            return;
        }
        lock (pool.HealthLock)
        {
            if (backend.Detached)
            {
                return;
            }
            var now = _time.GetUtcNow();
            var i = backend.Inputs;
            i.LastProbe = result;
            if (result.Success)
            {
                i.ProbeSuccesses++;
                i.ProbeFailures = 0;
                // The first success settles a pending backend at once: a new instance takes
                // traffic as soon as it answers, not after healthy_after intervals.
                if (i.ActiveUp is null || (i.ActiveUp == false && i.ProbeSuccesses >= active.HealthyAfter))
                {
                    i.ActiveUp = true;
                }
                // With active checks an ejection ends through probes, not a timer: healthy_after
                // passing probes in a row since it began (probed every fast_interval meanwhile).
                if (i.EjectedUntil is not null && i.ProbeSuccesses >= active.HealthyAfter)
                {
                    EndEjection(i, now);
                }
            }
            else
            {
                i.ProbeFailures++;
                i.ProbeSuccesses = 0;
                if (i.ActiveUp != false && i.ProbeFailures >= active.UnhealthyAfter)
                {
                    i.ActiveUp = false;
                }
            }
            Recompute(pool, backend);
            // Only a start-up backend's very first probe is exempt from slow start: one that was
            // failing and recovers later is cold, and ramps up like any other.
            backend.SkipFirstRamp = false;
        }
        Probed?.Invoke(pool, backend, result);
    }

    /// <summary>Sets an admin override (disable, drain, force healthy) with its reason and optional time to live.</summary>
    public void SetOverride(PoolState pool, BackendState backend, OverrideKind kind, string reason, string by, TimeSpan? ttl = null)
    {
        lock (pool.HealthLock)
        {
            if (backend.Detached)
            {
                return;
            }
            var now = _time.GetUtcNow();
            backend.Inputs.Override = new AdminOverride(kind, reason, by, now, ttl is { } t ? now + t : null);
            ScheduleTimer(pool, backend);
            Recompute(pool, backend);
        }
        SaveOverrides();
    }

    /// <summary>Clears any admin override (enable): the backend's status goes back to what passive and active health say.</summary>
    public void ClearOverride(PoolState pool, BackendState backend) => ClearOverride(pool, backend, null);

    /// <summary>Clears the override, but only <paramref name="only"/> when given (one set meanwhile stays).</summary>
    internal void ClearOverride(PoolState pool, BackendState backend, AdminOverride? only)
    {
        lock (pool.HealthLock)
        {
            if (backend.Detached || backend.Inputs.Override is null || (only is not null && !ReferenceEquals(backend.Inputs.Override, only)))
            {
                return;
            }
            backend.Inputs.Override = null;
            ScheduleTimer(pool, backend);
            Recompute(pool, backend);
        }
        SaveOverrides();
        // Probes kept running under the override, so the status is already current; one more
        // probe now confirms it rather than waiting a full interval.
        ProbeNow?.Invoke(pool, backend);
    }

    /// <summary>
    /// Reads a backend's health, the last event of its history, and whether the router would
    /// pick it, all at one instant (under the pool's health lock).
    /// </summary>
    public (BackendHealth Health, HealthEvent? Last, bool Routed) Sample(PoolState pool, BackendState backend)
    {
        lock (pool.HealthLock)
        {
            return (backend.Health, backend.History.Last, Array.IndexOf(pool.Available, backend) >= 0);
        }
    }

    /// <summary>Timer callback: an ejection or an override may have lapsed.</summary>
    private void OnTimer(PoolState pool, BackendState backend)
    {
        var overrideLapsed = false;
        lock (pool.HealthLock)
        {
            if (backend.Detached)
            {
                return;
            }
            var now = _time.GetUtcNow();
            var i = backend.Inputs;
            if (i.Override is { } o && !o.IsActive(now))
            {
                i.Override = null;
                overrideLapsed = true;
            }
            if (i.EjectedUntil is { } until && now >= until && pool.Config.Health.Active is null)
            {
                // Without active checks the ejection time is all there is to go by.
                EndEjection(i, now);
            }
            ScheduleTimer(pool, backend);
            Recompute(pool, backend);
        }
        if (overrideLapsed)
        {
            SaveOverrides();
        }
    }

    /// <summary>Arms the backend's one timer for the next lapse of its ejection or override (under the lock).</summary>
    private void ScheduleTimer(PoolState pool, BackendState backend)
    {
        var i = backend.Inputs;
        var now = _time.GetUtcNow();
        DateTimeOffset? next = null;
        if (i.EjectedUntil is { } until && until > now)
        {
            next = until;
        }
        if (i.Override?.Expires is { } expires && expires > now && (next is null || expires < next))
        {
            next = expires;
        }
        i.Timer?.Dispose();
        i.Timer = next is { } at
            ? _time.CreateTimer(static s => { var (a, p, b) = ((HealthAuthority, PoolState, BackendState))s!; a.OnTimer(p, b); }, (this, pool, backend), at - now, Timeout.InfiniteTimeSpan)
            : null;
    }

    private static void EndEjection(HealthInputs i, DateTimeOffset now)
    {
        i.EjectedUntil = null;
        i.EjectionReason = null;
        i.LastEjectionEnd = now;
    }

    /// <summary>
    /// Computes the backend's health from its inputs and publishes it; on a change of status,
    /// records the event, republishes the pool's available set and logs it (under the lock).
    /// </summary>
    private void Recompute(PoolState pool, BackendState backend, bool initial = false, bool rampUp = true)
    {
        var now = _time.GetUtcNow();
        var previous = backend.Health;
        var i = backend.Inputs;
        var (status, reason, source) = Compute(pool.Config.Health, i, now);
        var statusChanged = status != previous.Status;
        if (!initial && !statusChanged && reason == previous.Reason && ReferenceEquals(i.LastProbe, previous.LastProbe)
            && ReferenceEquals(i.Override, previous.Override) && i.EjectedUntil == previous.EjectedUntil)
        {
            return;
        }
        var next = new BackendHealth(status, reason, statusChanged || initial ? now : previous.Since, source, i.LastProbe, i.Override, i.EjectedUntil);
        backend.PublishHealth(next);
        if (!statusChanged)
        {
            if (initial)
            {
                pool.RepublishAvailable();
            }
            return;
        }
        var change = new HealthEvent(Interlocked.Increment(ref _sequence), pool.Name, backend.DisplayName, previous.Status, status, reason, source, now);
        backend.History.Add(change);
        if (status == HealthStatus.Healthy)
        {
            if (rampUp && !backend.SkipFirstRamp)
            {
                backend.BeginSlowStart();
            }
            backend.SkipFirstRamp = false;
        }
        pool.RepublishAvailable();
        LogChange(change);
        Changed?.Invoke(change);
    }

    /// <summary>The precedence rules, as one pure function.</summary>
    internal static (HealthStatus, string, HealthSource) Compute(HealthConfig config, HealthInputs i, DateTimeOffset now)
    {
        if (i.Override is { } o && o.IsActive(now))
        {
            return o.Kind switch
            {
                OverrideKind.Disable => (HealthStatus.Disabled, $"disabled by {o.By}: {o.Reason}", HealthSource.Admin),
                OverrideKind.Drain => (HealthStatus.Draining, $"draining by {o.By}: {o.Reason}", HealthSource.Admin),
                _ => (HealthStatus.Healthy, $"forced healthy by {o.By}: {o.Reason}", HealthSource.Admin),
            };
        }
        if (i.EjectedUntil is { } until)
        {
            return config.Active is { } checks
                ? (HealthStatus.Ejected, $"{i.EjectionReason}; back after {checks.HealthyAfter} passing health check(s) in a row ({i.ProbeSuccesses} so far)", HealthSource.Passive)
                : (HealthStatus.Ejected, i.EjectionReason ?? "ejected", HealthSource.Passive);
        }
        if (config.Active is not { } active)
        {
            return (HealthStatus.Healthy, config.Passive.Enabled ? "no active health check configured; watched by passive checks" : "no health checks configured", HealthSource.Config);
        }
        var probe = i.LastProbe;
        return i.ActiveUp switch
        {
            null when probe is null => (HealthStatus.Pending, "waiting for the first health check", HealthSource.Active),
            null => (HealthStatus.Pending, $"waiting for a passing health check ({i.ProbeFailures} of {active.UnhealthyAfter} failed): {probe.Detail}", HealthSource.Active),
            true => (HealthStatus.Healthy, $"health check passed: {probe?.Detail}", HealthSource.Active),
            false => (HealthStatus.Unhealthy, probe?.Detail ?? "health check failed", HealthSource.Active),
        };
    }

    private void SaveOverrides() => OverridesChanged?.Invoke();

    public void Dispose()
    {
        foreach (var pool in _pools())
        {
            lock (pool.HealthLock)
            {
                foreach (var backend in pool.Backends)
                {
                    backend.Inputs.Timer?.Dispose();
                    backend.Inputs.Timer = null;
                }
            }
        }
    }
}
