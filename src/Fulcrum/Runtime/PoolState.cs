using Fulcrum.Balancing;
using Fulcrum.Configuration;
using Fulcrum.Health;

namespace Fulcrum.Runtime;

/// <summary>
/// A pool's long-lived state: its backends, its balancing policy and its one upstream
/// <see cref="HttpMessageInvoker"/> (so upstream keep-alive connections are pooled per pool).
/// </summary>
public sealed class PoolState : IDisposable
{
    private BackendState[] _backends;
    private BackendState[] _available = [];
    private int _tieBreak;

    private PoolConfig _config;
    private IBalancingPolicy _policy;
    private HttpMessageInvoker _invoker;
    private bool _hasLimits;

    internal PoolState(PoolConfig config, HttpMessageInvoker invoker, TimeProvider? time = null)
    {
        _config = config;
        _invoker = invoker;
        Time = time ?? TimeProvider.System;
        _policy = BalancingPolicies.Get(config.Balancing);
        _backends = [.. config.Backends.Select(b => new BackendState(config.Name, b, Time, config.SlowStart) { Owner = this })];
        _tls = config.Tls is null ? null : new Forwarding.UpstreamTls(config.Tls);
        UpdateLimits();
    }

    public string Name => Config.Name;

    /// <summary>The pool's configuration now; a reload may replace it (the name never changes).</summary>
    public PoolConfig Config => Volatile.Read(ref _config);

    public IBalancingPolicy Policy => Volatile.Read(ref _policy);

    public HttpMessageInvoker Invoker => Volatile.Read(ref _invoker);

    private Forwarding.UpstreamTls? _tls;

    /// <summary>TLS to the backends (<c>pools[].tls</c>), as the configuration says now; null: cleartext.</summary>
    internal Forwarding.UpstreamTls? Tls => Volatile.Read(ref _tls);

    /// <summary>
    /// Takes a reloaded configuration for this pool. The backends, their health and counters, and
    /// the upstream connections stay; the balancing policy is replaced only when it changed (so a
    /// round robin keeps its turn), and the upstream handler only when its connection limit did.
    /// Returns the handler replaced, for the caller to dispose once requests have let go of it.
    /// </summary>
    internal HttpMessageInvoker? Reconfigure(PoolConfig config)
    {
        var old = Config;
        Volatile.Write(ref _config, config);
        if (!string.Equals(old.Balancing, config.Balancing, StringComparison.Ordinal))
        {
            Volatile.Write(ref _policy, BalancingPolicies.Get(config.Balancing));
        }
        UpdateLimits();
        if (!Equals(old.Tls, config.Tls))
        {
            // New connections use the new settings; idle ones made with the old are passed over.
            Volatile.Write(ref _tls, config.Tls is null ? null : new Forwarding.UpstreamTls(config.Tls));
        }
        if (old.Limits.MaxConnections != config.Limits.MaxConnections || old.Limits.UpstreamResponseHeaders != config.Limits.UpstreamResponseHeaders || !Equals(old.Tls, config.Tls))
        {
            return Interlocked.Exchange(ref _invoker, Forwarding.UpstreamHandlerFactory.CreateInvoker(config.Limits));
        }
        return null;
    }

    /// <summary>Turns the wake-up of queued requests on for every backend when requests in flight are limited.</summary>
    private void UpdateLimits()
    {
        var config = Config;
        var backends = Volatile.Read(ref _backends);
        _hasLimits = config.Limits.Any || backends.Any(b => b.MaxRequests(config.Limits) > 0);
        foreach (var b in backends)
        {
            b.RoomFreed = _hasLimits ? SignalRoom : null;
        }
        if (!_hasLimits)
        {
            SignalRoom(); // requests queued under limits a reload removed look again at once
        }
    }

    internal TimeProvider Time { get; }

    /// <summary>Every backend of the pool, in configuration order (runtime additions last).</summary>
    public IReadOnlyList<BackendState> Backends => Volatile.Read(ref _backends);

    /// <summary>
    /// The backends that may take new traffic now, in order. Published whole by the
    /// <see cref="HealthAuthority"/>: a request reads this array once and never sees it change.
    /// </summary>
    public BackendState[] Available => Volatile.Read(ref _available);

    /// <summary>
    /// True when no backend is healthy and the pool routes to the others anyway
    /// (<c>when_none_healthy: route_anyway</c>).
    /// </summary>
    public bool FailingOpen { get; private set; }

    internal object BalancerLock { get; } = new();

    private int _activeRequests;
    private int _activeRetries;
    private long _budgetExhausted;
    private readonly long[] _retries = new long[Enum.GetValues<Forwarding.FulcrumError>().Length + 1];

    /// <summary>Client requests being served by this pool now (the retry budget is a share of it).</summary>
    public int ActiveRequests => Volatile.Read(ref _activeRequests);

    /// <summary>Retries refused because the budget was spent.</summary>
    public long RetryBudgetExhausted => Interlocked.Read(ref _budgetExhausted);

    private TaskCompletionSource _room = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _pending;
    private long _saturated;

    /// <summary>True when requests in flight are limited, per pool or per backend.</summary>
    internal bool HasLimits => Volatile.Read(ref _hasLimits);

    /// <summary>Requests waiting for a backend with room (bounded by <c>limits.max_pending</c>).</summary>
    public int Pending => Volatile.Read(ref _pending);

    /// <summary>Requests answered 503 pool_saturated.</summary>
    public long Saturated => Interlocked.Read(ref _saturated);

    internal void CountSaturated() => Interlocked.Increment(ref _saturated);

    /// <summary>Wakes the requests waiting for room (a request ended somewhere in the pool).</summary>
    internal void SignalRoom()
    {
        if (Volatile.Read(ref _pending) > 0)
        {
            Interlocked.Exchange(ref _room, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        }
    }

    /// <summary>
    /// Joins the queue of requests waiting for room, if it has a place: false at once when
    /// <c>max_pending</c> are already waiting. Pair a true answer with <see cref="LeaveQueue"/>.
    /// </summary>
    internal bool TryJoinQueue()
    {
        if (Interlocked.Increment(ref _pending) > Config.Limits.MaxPending)
        {
            Interlocked.Decrement(ref _pending);
            return false;
        }
        return true;
    }

    internal void LeaveQueue() => Interlocked.Decrement(ref _pending);

    /// <summary>Completes when room may have been freed (the caller looks again).</summary>
    internal Task RoomMayBeFree => Volatile.Read(ref _room).Task;

    internal void EnterRequest() => Interlocked.Increment(ref _activeRequests);

    internal void LeaveRequest() => Interlocked.Decrement(ref _activeRequests);

    /// <summary>
    /// Takes one retry from the budget: retries in flight may be at most <c>percent</c> of the
    /// pool's requests in flight, or <c>min_concurrent</c>, whichever is more. False (and counted)
    /// when it is spent.
    /// </summary>
    internal bool TryBeginRetry()
    {
        var budget = Config.RetryBudget;
        var allowed = Math.Max(budget.MinConcurrent, Volatile.Read(ref _activeRequests) * budget.Percent / 100);
        if (Interlocked.Increment(ref _activeRetries) > allowed)
        {
            Interlocked.Decrement(ref _activeRetries);
            Interlocked.Increment(ref _budgetExhausted);
            return false;
        }
        return true;
    }

    internal void EndRetry() => Interlocked.Decrement(ref _activeRetries);

    /// <summary>Retries made, by the failure that caused them (a status counts as its code's slot 0).</summary>
    internal void CountRetry(Forwarding.FulcrumError reason) => Interlocked.Increment(ref _retries[(int)reason]);

    public IReadOnlyDictionary<string, long> RetriesByReason()
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var reason in Enum.GetValues<Forwarding.FulcrumError>())
        {
            var n = Interlocked.Read(ref _retries[(int)reason]);
            if (n > 0)
            {
                result[reason == Forwarding.FulcrumError.None ? "status" : Forwarding.ErrorCodes.Code(reason)] = n;
            }
        }
        return result;
    }

    /// <summary>Serialises every health transition of this pool's backends (see <see cref="HealthAuthority"/>).</summary>
    internal object HealthLock { get; } = new();

    internal int NextTieBreak() => Interlocked.Increment(ref _tieBreak);

    public BackendState? Find(string nameOrAddress)
    {
        foreach (var backend in Backends)
        {
            if (backend.Config.Name == nameOrAddress || string.Equals(backend.Address, nameOrAddress, StringComparison.OrdinalIgnoreCase))
            {
                return backend;
            }
        }
        return null;
    }

    /// <summary>Adds a backend (caller holds <see cref="HealthLock"/>).</summary>
    internal void AddBackend(BackendState backend)
    {
        backend.Owner = this;
        Volatile.Write(ref _backends, [.. _backends, backend]);
        UpdateLimits();
    }

    /// <summary>Removes a backend (caller holds <see cref="HealthLock"/>).</summary>
    internal void RemoveBackend(BackendState backend) =>
        Volatile.Write(ref _backends, [.. _backends.Where(b => !ReferenceEquals(b, backend))]);

    /// <summary>
    /// Recomputes <see cref="Available"/> from every backend's health (caller holds
    /// <see cref="HealthLock"/>, so it is consistent with the health values just published).
    /// </summary>
    internal void RepublishAvailable()
    {
        var all = _backends;
        var healthy = new List<BackendState>(all.Length);
        foreach (var b in all)
        {
            if (b.Health.TakesTraffic)
            {
                healthy.Add(b);
            }
        }
        var failOpen = false;
        if (healthy.Count == 0 && Config.WhenNoneHealthy == NoneHealthyMode.RouteAnyway)
        {
            // Fail open, but never against an admin's decision.
            foreach (var b in all)
            {
                if (b.Health.Status is not (HealthStatus.Disabled or HealthStatus.Draining))
                {
                    healthy.Add(b);
                }
            }
            failOpen = healthy.Count > 0;
        }
        FailingOpen = failOpen;
        Volatile.Write(ref _available, [.. healthy]);
    }

    /// <summary>Backends of a reload, in the file's order (caller holds <see cref="HealthLock"/>).</summary>
    internal void ReplaceBackends(BackendState[] backends)
    {
        foreach (var b in backends)
        {
            b.Owner = this;
        }
        Volatile.Write(ref _backends, backends);
        UpdateLimits();
    }

    public void Dispose()
    {
        Invoker.Dispose();
        foreach (var b in Backends)
        {
            b.Connections.Dispose();
        }
    }
}
