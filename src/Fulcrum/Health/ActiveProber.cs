using Fulcrum.Runtime;

namespace Fulcrum.Health;

/// <summary>
/// Runs one probe loop per backend of every pool with active checks. A loop is a one-shot timer
/// re-armed only when its probe has finished, so at most one probe per backend is ever in flight
/// and probes never pile up behind a slow backend. A new backend is probed at once; a pending,
/// unhealthy or ejected one, or a healthy one whose last probe failed, every <c>fast_interval</c>;
/// a healthy one every <c>interval</c>; each with up to <c>jitter</c> added so that a thousand
/// backends are not probed in one burst.
/// </summary>
public sealed class ActiveProber : IDisposable
{
    private readonly HealthAuthority _authority;
    private readonly IHealthProbe _probe;
    private readonly TimeProvider _time;
    private readonly Dictionary<BackendState, ProbeLoop> _loops = new(ReferenceEqualityComparer.Instance);
    private bool _disposed;

    public ActiveProber(HealthAuthority authority, IHealthProbe probe, TimeProvider time)
    {
        _authority = authority;
        _probe = probe;
        _time = time;
        authority.ProbeNow = (pool, backend) => _ = ProbeNowAsync(pool, backend);
    }

    /// <summary>How many probe loops run (one per probed backend).</summary>
    public int LoopCount
    {
        get
        {
            lock (_loops)
            {
                return _loops.Count;
            }
        }
    }

    /// <summary>
    /// Starts probing a backend, with a probe at once; the task completes when that first probe has.
    /// Does nothing for a pool without active checks.
    /// </summary>
    public Task Start(PoolState pool, BackendState backend)
    {
        if (pool.Config.Health.Active is null)
        {
            return Task.CompletedTask;
        }
        ProbeLoop loop;
        lock (_loops)
        {
            // A backend removed before its loop started (add and remove racing) gets none.
            if (_disposed || backend.Detached || _loops.ContainsKey(backend))
            {
                return Task.CompletedTask;
            }
            loop = new ProbeLoop(this, pool, backend);
            _loops[backend] = loop;
        }
        // Probe at once rather than on the next timer tick: a new instance takes traffic as soon
        // as it answers (the probe runs on this thread up to its first network wait).
        return loop.RunNowAsync();
    }

    public void Stop(BackendState backend)
    {
        ProbeLoop? loop;
        lock (_loops)
        {
            _loops.Remove(backend, out loop);
        }
        loop?.Dispose();
    }

    /// <summary>
    /// Probes a backend now, reports the result to the authority and returns it. When a probe of
    /// that backend is already in flight, waits for that one instead of starting a second.
    /// </summary>
    public Task<ProbeResult?> ProbeNowAsync(PoolState pool, BackendState backend)
    {
        ProbeLoop? loop;
        lock (_loops)
        {
            _loops.TryGetValue(backend, out loop);
        }
        return loop is null ? Task.FromResult<ProbeResult?>(null) : loop.RunNowAsync();
    }

    public void Dispose()
    {
        List<ProbeLoop> loops;
        lock (_loops)
        {
            _disposed = true;
            loops = [.. _loops.Values];
            _loops.Clear();
        }
        foreach (var loop in loops)
        {
            loop.Dispose();
        }
    }

    private static readonly TimeSpan Quantum = TimeSpan.FromMilliseconds(100);

    private sealed class ProbeLoop : IDisposable
    {
        private readonly ActiveProber _owner;
        private readonly PoolState _pool;
        private readonly BackendState _backend;
        private readonly ITimer _timer;
        private readonly CancellationTokenSource _stop = new();
        private readonly object _lock = new();
        private TaskCompletionSource<ProbeResult?>? _running;

        public ProbeLoop(ActiveProber owner, PoolState pool, BackendState backend)
        {
            _owner = owner;
            _pool = pool;
            _backend = backend;
            _timer = owner._time.CreateTimer(static s => _ = ((ProbeLoop)s!).RunNowAsync(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        public void Schedule(TimeSpan due)
        {
            try
            {
                _timer.Change(due, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
            }
        }

        public Task<ProbeResult?> RunNowAsync()
        {
            TaskCompletionSource<ProbeResult?> running;
            lock (_lock)
            {
                if (_stop.IsCancellationRequested)
                {
                    return Task.FromResult<ProbeResult?>(null);
                }
                // One probe in flight per backend: a second caller shares the running one.
                if (_running is { } existing)
                {
                    return existing.Task;
                }
                // Published before the probe starts, so a probe that completes synchronously
                // cannot clear it before it is set.
                _running = running = new TaskCompletionSource<ProbeResult?>(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            _ = RunAsync(running);
            return running.Task;
        }

        private async Task RunAsync(TaskCompletionSource<ProbeResult?> running)
        {
            if (_pool.Config.Health.Active is not { } config)
            {
                // A reload turned active checks off while this loop was still running: it ends.
                lock (_lock)
                {
                    _running = null;
                }
                _owner.Stop(_backend);
                running.TrySetResult(null);
                return;
            }
            ProbeResult? result = null;
            try
            {
                // One source per probe: it times out on the injected clock, and stopping the loop
                // cancels it through a registration rather than a second, linked source.
                using var timeout = new CancellationTokenSource(config.Timeout, _owner._time);
                using var stopping = _stop.Token.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), timeout);
                result = await _owner._probe.ProbeAsync(config, _backend, timeout.Token).ConfigureAwait(false);
                if (!_stop.IsCancellationRequested)
                {
                    _owner._authority.ReportProbe(_pool, _backend, result);
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                result = null;
            }
            finally
            {
                lock (_lock)
                {
                    _running = null;
                }
                if (_backend.Detached)
                {
                    _owner.Stop(_backend); // left its pool: this loop ends here
                }
                else if (!_stop.IsCancellationRequested)
                {
                    Schedule(NextDelay(config));
                }
                running.TrySetResult(result);
            }
        }

        private TimeSpan NextDelay(Configuration.ActiveHealthConfig config)
        {
            // The full interval only while healthy and passing; a failing healthy backend is on its
            // way down (HAProxy's fastinter), so it is confirmed quickly.
            var health = _backend.Health;
            var interval = health.Status == HealthStatus.Healthy && health.LastProbe is not { Success: false } ? config.Interval : config.FastInterval;
#pragma warning disable CA5394 // jitter spreads probes; it is not a secret
            var jitter = config.Jitter > TimeSpan.Zero ? TimeSpan.FromTicks(Random.Shared.NextInt64(config.Jitter.Ticks)) : TimeSpan.Zero;
#pragma warning restore CA5394
            // Due times are rounded up to a 100 ms boundary of the clock: a thousand loops then
            // fire in ten batches a second instead of a thousand lone wake-ups, which costs a
            // thread pool far less (measured in docs/performance.md). Jitter still spreads them.
            var now = _owner._time.GetUtcNow().UtcTicks;
            var due = now + (interval + jitter).Ticks;
            var quantum = Math.Min(Quantum.Ticks, Math.Max(1, interval.Ticks / 10));
            var aligned = (due + quantum - 1) / quantum * quantum;
            return TimeSpan.FromTicks(aligned - now);
        }

        public void Dispose()
        {
            // _stop owns no timer, so it is not disposed: a probe still finishing may read it.
            _stop.Cancel();
            _timer.Dispose();
        }
    }
}
