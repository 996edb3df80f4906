using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Fulcrum.Runtime;

namespace Fulcrum.Health;

public sealed partial class HealthAuthority
{
    /// <summary>
    /// Passive health: the outcome of one forwarded attempt. On the hot path: a success with no
    /// failures counted costs two volatile reads and takes no lock; the lock is taken only when a
    /// failure streak reaches its threshold.
    /// </summary>
    public void ReportTraffic(PoolState pool, BackendState backend, in ForwardResult result)
    {
        var passive = pool.Config.Health.Passive;
        if (!passive.Enabled)
        {
            return;
        }
        if (IsTransportFailure(result.Error))
        {
            var n = Interlocked.Increment(ref backend.PassiveFailures);
            if (n >= passive.ConsecutiveFailures)
            {
                Eject(pool, backend, passive, $"{n} consecutive failures in traffic (last: {ErrorCodes.Code(result.Error)}: {result.Detail})");
            }
            return;
        }
        if (result.Error != FulcrumError.None)
        {
            return; // the client's doing (aborted, malformed): says nothing about the backend
        }
        if (IsFailureStatus(passive, result.UpstreamStatus))
        {
            var n = Interlocked.Increment(ref backend.Passive5xx);
            if (n >= passive.Consecutive5xx)
            {
                Eject(pool, backend, passive, $"{n} consecutive {result.UpstreamStatus} responses in traffic");
            }
            return;
        }
        if (Volatile.Read(ref backend.PassiveFailures) != 0)
        {
            Interlocked.Exchange(ref backend.PassiveFailures, 0);
        }
        if (Volatile.Read(ref backend.Passive5xx) != 0)
        {
            Interlocked.Exchange(ref backend.Passive5xx, 0);
        }
    }

    private static bool IsTransportFailure(FulcrumError error) => error is
        FulcrumError.ConnectRefused or FulcrumError.ConnectTimeout or FulcrumError.ConnectFailed or
        FulcrumError.UpstreamReset or FulcrumError.UpstreamProtocolError or FulcrumError.ResponseTimeout or
        FulcrumError.IdleTimeout;

    private static bool IsFailureStatus(PassiveHealthConfig passive, int status)
    {
        foreach (var s in passive.FailureStatuses)
        {
            if (s == status)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Ejects a backend for its ejection time (the base time multiplied by how many times it has been
    /// ejected recently, up to the cap), unless that would take more of the pool out than
    /// <c>max_ejected_percent</c> allows: a fault shared by every backend (a database down behind
    /// all of them) must not empty the pool.
    /// </summary>
    private void Eject(PoolState pool, BackendState backend, PassiveHealthConfig passive, string why)
    {
        lock (pool.HealthLock)
        {
            Interlocked.Exchange(ref backend.PassiveFailures, 0);
            Interlocked.Exchange(ref backend.Passive5xx, 0);
            var i = backend.Inputs;
            if (backend.Detached || i.EjectedUntil is not null)
            {
                return;
            }
            var backends = pool.Backends;
            var ejected = 0;
            foreach (var b in backends)
            {
                if (b.Inputs.EjectedUntil is not null)
                {
                    ejected++;
                }
            }
            var allowed = Math.Max(1, backends.Count * passive.MaxEjectedPercent / 100);
            if (ejected >= allowed)
            {
                LogEjectionRefused(pool.Name, backend.DisplayName, why, ejected, backends.Count, passive.MaxEjectedPercent);
                return;
            }
            var now = _time.GetUtcNow();
            if (i.LastEjectionEnd is { } end && now - end > passive.MaxEjection)
            {
                i.Ejections = 0; // a long good spell forgives earlier ejections
            }
            i.Ejections++;
            // Probes that passed before the ejection do not count toward coming back from it.
            i.ProbeSuccesses = 0;
            var duration = TimeSpan.FromTicks(Math.Min(passive.Ejection.Ticks * i.Ejections, passive.MaxEjection.Ticks));
            i.EjectedUntil = now + duration;
            i.EjectionReason = $"ejected for {Duration.Format(duration)} after {why}";
            ScheduleTimer(pool, backend);
            Recompute(pool, backend);
        }
    }
}
