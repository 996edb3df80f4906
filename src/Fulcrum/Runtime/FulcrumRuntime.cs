using System.Collections.Frozen;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Fulcrum.Health;
using Fulcrum.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fulcrum.Runtime;

/// <summary>
/// Owns the long-lived pool and backend state, the health authority and the active prober, and
/// publishes snapshots of routes and pools. The request path reads <see cref="Current"/> without a
/// lock.
/// </summary>
public sealed class FulcrumRuntime : IDisposable
{
    private RuntimeSnapshot _current;
    private readonly IHealthProbe _probe;
    private readonly bool _ownsProbe;

    /// <param name="config">The validated configuration.</param>
    /// <param name="time">The clock every timer and timestamp uses (tests pass a fake one).</param>
    /// <param name="loggers">Where health changes are logged.</param>
    /// <param name="probe">How backends are probed (tests pass a fake one); by default over the network.</param>
    public FulcrumRuntime(FulcrumConfig config, TimeProvider? time = null, ILoggerFactory? loggers = null, IHealthProbe? probe = null)
    {
        Time = time ?? TimeProvider.System;
        var pools = new Dictionary<string, PoolState>(StringComparer.Ordinal);
        foreach (var pool in config.Pools)
        {
            pools[pool.Name] = new PoolState(pool, UpstreamHandlerFactory.CreateInvoker(pool.Limits), Time);
        }
        var frozen = pools.ToFrozenDictionary(StringComparer.Ordinal);
        _current = new RuntimeSnapshot(config, RouteTable.Build(config, frozen), frozen);

        _logger = (loggers ?? NullLoggerFactory.Instance).CreateLogger("Fulcrum.Runtime");
        _stateFile = config.EffectiveStateFile is { } path ? new HealthStateFile(path) : null;
        Health = new HealthAuthority(Time, (loggers ?? NullLoggerFactory.Instance).CreateLogger("Fulcrum.Health"), () => Current.Pools.Values)
        {
            OverridesChanged = SaveState,
        };
        _ownsProbe = probe is null;
        _probe = probe ?? new NetworkHealthProbe(Time);
        Prober = new ActiveProber(Health, _probe, Time);
        Tunnels = new TunnelRegistry(Time);

        // What the admin API changed before a restart applies again: backends removed and added,
        // and overrides, matched by pool and address.
        var saved = _stateFile?.Load() ?? SavedState.Empty;
        foreach (var removed in saved.Removed ?? [])
        {
            if (frozen.TryGetValue(removed.Pool, out var pool) && pool.Find(removed.Address) is { } backend)
            {
                pool.RemoveBackend(backend);
                _removed[(removed.Pool, Key(removed.Address))] = removed;
            }
        }
        foreach (var added in saved.Added ?? [])
        {
            if (frozen.TryGetValue(added.Pool, out var pool) && pool.Find(added.Address) is null
                && HostPort.TryParse(added.Address, false, out var endpoint, out _))
            {
                var backendConfig = new BackendConfig(added.Address, endpoint!, Math.Clamp(added.Weight, BackendConfig.MinWeight, BackendConfig.MaxWeight), added.Name);
                pool.AddBackend(new BackendState(pool.Name, backendConfig, Time, pool.Config.SlowStart));
                _added[(added.Pool, Key(added.Address))] = added;
            }
        }
        var overrides = new Dictionary<(string, string), SavedOverride>();
        foreach (var o in saved.Overrides ?? [])
        {
            overrides[(o.Pool, Key(o.Backend))] = o; // the last one written wins
        }
        foreach (var pool in frozen.Values)
        {
            foreach (var backend in pool.Backends)
            {
                AdminOverride? restored = null;
                if (overrides.TryGetValue((pool.Name, Key(backend.Address)), out var o) && AdminOverride.Parse(o.Kind) is { } kind)
                {
                    restored = new AdminOverride(kind, o.Reason, o.By, o.Since, o.Expires);
                }
                Health.Attach(pool, backend, restored, rampUp: false);
            }
        }
    }

    private readonly ILogger _logger;
    private readonly HealthStateFile? _stateFile;
    private readonly object _stateLock = new();
    private readonly Dictionary<(string Pool, string Address), SavedBackend> _added = [];
    private readonly Dictionary<(string Pool, string Address), SavedBackend> _removed = [];

    private static string Key(string address) => address.ToUpperInvariant();

    public TimeProvider Time { get; }

    public RuntimeSnapshot Current => Volatile.Read(ref _current);

    /// <summary>The one writer of backend health.</summary>
    public HealthAuthority Health { get; }

    public ActiveProber Prober { get; }

    /// <summary>Every open tunnel, and the watch that closes idle, expired and drained ones.</summary>
    internal TunnelRegistry Tunnels { get; }

    /// <summary>
    /// Starts the probe loops: every backend of a pool with active checks is probed at once. The
    /// task completes when that first round has (each probe is bounded by its timeout).
    /// </summary>
    public Task Start()
    {
        var first = new List<Task>();
        foreach (var pool in Current.Pools.Values)
        {
            foreach (var backend in pool.Backends)
            {
                first.Add(Prober.Start(pool, backend));
            }
        }
        return Task.WhenAll(first);
    }

    /// <summary>How long the first probe round can take at most: the longest probe timeout.</summary>
    public TimeSpan FirstRoundLimit => Current.Pools.Values
        .Select(p => p.Config.Health.Active?.Timeout ?? TimeSpan.Zero)
        .DefaultIfEmpty(TimeSpan.Zero).Max() + TimeSpan.FromMilliseconds(500);

    public PoolState Pool(string name) =>
        Current.Pools.TryGetValue(name, out var pool) ? pool : throw new KeyNotFoundException($"no pool named '{name}'");

    /// <summary>
    /// Registers a backend at runtime: it starts pending and is probed at once (healthy at once when
    /// the pool has no active checks). Registering an address the pool already has returns that backend.
    /// </summary>
    public BackendState AddBackend(string pool, BackendConfig backend, bool persist = false) =>
        AddBackend(pool, backend, persist, out _);

    /// <summary>As <see cref="AddBackend(string, BackendConfig, bool)"/>, saying whether it was new.</summary>
    public BackendState AddBackend(string pool, BackendConfig backend, bool persist, out bool isNew)
    {
        // Under the reload lock: a reload matching this pool's backends must see this one whole.
        lock (_reloadLock)
        {
            return AddBackendLocked(pool, backend, persist, out isNew);
        }
    }

    private BackendState AddBackendLocked(string pool, BackendConfig backend, bool persist, out bool isNew)
    {
        var state = Pool(pool);
        var added = Health.Add(state, backend, out isNew);
        if (isNew)
        {
            Prober.Start(state, added);
            if (persist)
            {
                lock (_stateLock)
                {
                    _removed.Remove((pool, Key(backend.Address)));
                    _added[(pool, Key(backend.Address))] = new SavedBackend(pool, backend.Address, backend.Weight, backend.Name);
                }
                SaveState();
            }
        }
        return added;
    }

    /// <summary>Removes a backend: no new traffic, its probes stop; requests in flight finish.</summary>
    public bool RemoveBackend(string pool, string nameOrAddress, bool persist = false)
    {
        lock (_reloadLock)
        {
            return RemoveBackendLocked(pool, nameOrAddress, persist);
        }
    }

    private bool RemoveBackendLocked(string pool, string nameOrAddress, bool persist)
    {
        var state = Pool(pool);
        if (state.Find(nameOrAddress) is not { } backend)
        {
            return false;
        }
        Forget(state, backend);
        if (persist)
        {
            lock (_stateLock)
            {
                // A backend the API added is simply forgotten; one from the file is remembered as removed.
                if (!_added.Remove((pool, Key(backend.Address))))
                {
                    _removed[(pool, Key(backend.Address))] = new SavedBackend(pool, backend.Address, backend.Weight, backend.Config.Name);
                }
            }
            SaveState();
        }
        return true;
    }

    private readonly object _reloadLock = new();
    private readonly List<HttpMessageInvoker> _retired = [];

    /// <summary>How long a replaced upstream handler is kept for the requests and tunnels still using it.</summary>
    internal static readonly TimeSpan RetireAfter = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Applies a validated configuration in place, and publishes it as one new snapshot. Pools and
    /// backends are matched by name and by pool plus address: a kept pool keeps its state object,
    /// its upstream connections and its backends; a kept backend (even with a new weight) keeps its
    /// health, counters, history and override; a new one starts pending and is probed at once; a
    /// removed one leaves its pool and its requests and tunnels in flight finish. Backends the admin
    /// API added, removed or overrode stay so unless the new file changes that same backend.
    /// Requests in flight keep the snapshot they started with.
    /// </summary>
    internal ReloadChanges Apply(FulcrumConfig next)
    {
        lock (_reloadLock)
        {
            var current = Current;
            var changes = new ReloadChanges();
            var pools = new Dictionary<string, PoolState>(StringComparer.Ordinal);
            var toProbe = new List<(PoolState Pool, BackendState Backend)>();
            var oldPools = current.Config.Pools.ToDictionary(p => p.Name, StringComparer.Ordinal);
            foreach (var config in next.Pools)
            {
                if (current.Pools.TryGetValue(config.Name, out var pool))
                {
                    var old = pool.Config;
                    var oldFile = oldPools.GetValueOrDefault(config.Name) ?? old;
                    var wasActive = old.Health.Active is not null;
                    var isActive = config.Health.Active is not null;
                    if (wasActive && !isActive)
                    {
                        // Before the new settings: a loop must not run a probe with no check to run.
                        foreach (var b in pool.Backends)
                        {
                            Prober.Stop(b);
                        }
                    }
                    if (pool.Reconfigure(config) is { } replaced)
                    {
                        Retire(replaced);
                    }
                    if (!old.Equals(config))
                    {
                        changes.PoolsChanged.Add(config.Name);
                    }
                    ApplyBackends(pool, oldFile, config, changes, toProbe);
                    if (wasActive && !isActive)
                    {
                        foreach (var b in pool.Backends)
                        {
                            Health.Reevaluate(pool, b);
                        }
                    }
                    else if (isActive && !wasActive)
                    {
                        foreach (var b in pool.Backends)
                        {
                            toProbe.Add((pool, b));
                        }
                    }
                }
                else
                {
                    pool = new PoolState(config, UpstreamHandlerFactory.CreateInvoker(config.Limits), Time);
                    foreach (var b in pool.Backends)
                    {
                        Health.Attach(pool, b, null, rampUp: true);
                        toProbe.Add((pool, b));
                    }
                    changes.PoolsAdded.Add(config.Name);
                }
                pools[config.Name] = pool;
            }
            foreach (var (name, pool) in current.Pools)
            {
                if (pools.ContainsKey(name))
                {
                    continue;
                }
                changes.PoolsRemoved.Add(name);
                foreach (var b in pool.Backends)
                {
                    Forget(pool, b);
                }
                Retire(pool.Invoker);
                lock (_stateLock)
                {
                    foreach (var key in _added.Keys.Where(k => k.Pool == name).ToList())
                    {
                        _added.Remove(key);
                    }
                    foreach (var key in _removed.Keys.Where(k => k.Pool == name).ToList())
                    {
                        _removed.Remove(key);
                    }
                }
            }
            changes.RoutesChanged = !current.Config.Routes.Equals(next.Routes);
            var frozen = pools.ToFrozenDictionary(StringComparer.Ordinal);
            Volatile.Write(ref _current, new RuntimeSnapshot(next, RouteTable.Build(next, frozen), frozen));
            foreach (var (pool, backend) in toProbe)
            {
                _ = Prober.Start(pool, backend);
            }
            SaveState();
            return changes;
        }
    }

    /// <summary>
    /// Matches a kept pool's backends against the new file: kept ones updated in place, new ones
    /// created, removed ones detached. <paramref name="oldFile"/> is the pool as the previous file
    /// had it, to tell "the file changed this backend" from "the admin API did".
    /// </summary>
    private void ApplyBackends(PoolState pool, PoolConfig oldFile, PoolConfig config, ReloadChanges changes, List<(PoolState, BackendState)> toProbe)
    {
        // Admin API additions and removals take the reload lock too, so this pool's backends
        // cannot change between this look and the replacement below.
        var existing = new Dictionary<string, BackendState>(StringComparer.Ordinal);
        var current = pool.Backends;
        foreach (var b in current)
        {
            existing[Key(b.Address)] = b;
        }
        var before = oldFile.Backends.ToDictionary(b => Key(b.Address), StringComparer.Ordinal);
        var result = new List<BackendState>(config.Backends.Count);
        var added = new List<BackendState>();
        var clearOverrides = new List<(BackendState Backend, AdminOverride Override)>();
        var removed = new List<BackendState>();
        lock (_stateLock)
        {
            foreach (var backendConfig in config.Backends)
            {
                var key = Key(backendConfig.Address);
                var fileChanged = !before.TryGetValue(key, out var previous) || !previous.Equals(backendConfig);
                if (existing.Remove(key, out var kept))
                {
                    if (!kept.Config.Equals(backendConfig))
                    {
                        kept.UpdateConfig(backendConfig);
                        changes.BackendsUpdated.Add($"{pool.Name}/{backendConfig.Address}");
                    }
                    // The file now says what this backend is; an override the API set on the
                    // entry the file just changed gives way to the file.
                    if (previous is not null && fileChanged && kept.Health.Override is { } set)
                    {
                        clearOverrides.Add((kept, set));
                    }
                    kept.SlowStart = config.SlowStart;
                    _added.Remove((pool.Name, key));
                    result.Add(kept);
                }
                else if (_removed.ContainsKey((pool.Name, key)) && !fileChanged)
                {
                    // Removed through the API, and the file did not change it: it stays removed.
                }
                else
                {
                    _removed.Remove((pool.Name, key));
                    var fresh = new BackendState(pool.Name, backendConfig, Time, config.SlowStart);
                    result.Add(fresh);
                    added.Add(fresh);
                    changes.BackendsAdded.Add($"{pool.Name}/{backendConfig.Address}");
                }
            }

            // What the file no longer lists: a backend the API registered stays (it is not the
            // file's to remove); any other leaves.
            foreach (var b in current)
            {
                if (!existing.ContainsKey(Key(b.Address)))
                {
                    continue; // kept above
                }
                if (_added.ContainsKey((pool.Name, Key(b.Address))))
                {
                    result.Add(b);
                }
                else
                {
                    removed.Add(b);
                    changes.BackendsRemoved.Add($"{pool.Name}/{b.Address}");
                }
            }
        }
        Health.ReplaceBackends(pool, [.. result]);
        foreach (var b in added)
        {
            Health.Attach(pool, b, null, rampUp: true);
            toProbe.Add((pool, b));
        }
        foreach (var b in removed)
        {
            Forget(pool, b);
        }
        foreach (var (b, set) in clearOverrides)
        {
            // Only the override the file overrules: one an operator set meanwhile stays.
            Health.ClearOverride(pool, b, set);
        }
    }

    /// <summary>
    /// A backend leaves its pool (removed by the API or a reload, or its pool removed): its probes
    /// stop, its health is dropped, and its idle connections close now (those in use close when
    /// their request ends).
    /// </summary>
    private void Forget(PoolState pool, BackendState backend)
    {
        Prober.Stop(backend);
        Health.Remove(pool, backend);
        backend.Connections.Dispose();
    }

    /// <summary>Disposes a replaced upstream handler once the requests and tunnels using it have had time to end.</summary>
    private void Retire(HttpMessageInvoker invoker)
    {
        lock (_retired)
        {
            _retired.Add(invoker);
        }
        _ = Task.Delay(RetireAfter, Time).ContinueWith(_ =>
        {
            lock (_retired)
            {
                if (!_retired.Remove(invoker))
                {
                    return; // disposed with the runtime
                }
            }
            invoker.Dispose();
        }, TaskScheduler.Default);
    }

    /// <summary>Writes the state file: every override in force and the API's additions and removals, atomically.</summary>
    public void SaveState()
    {
        if (_stateFile is null)
        {
            return;
        }
        lock (_stateLock)
        {
            var overrides = new List<SavedOverride>();
            foreach (var pool in Current.Pools.Values)
            {
                foreach (var backend in pool.Backends)
                {
                    if (backend.Health.Override is { } o)
                    {
                        overrides.Add(new SavedOverride(pool.Name, backend.Address, AdminOverride.Name(o.Kind), o.Reason, o.By, o.Since, o.Expires));
                    }
                }
            }
            try
            {
                _stateFile.Save(new SavedState(1, overrides, [.. _added.Values], [.. _removed.Values]));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _logger.LogError("cannot write the state file {Path}: {Error}; runtime changes will not survive a restart", _stateFile.Path, e.Message);
            }
        }
    }

    public void Dispose()
    {
        Tunnels.Dispose();
        Prober.Dispose();
        Health.Dispose();
        if (_ownsProbe && _probe is IDisposable disposable)
        {
            disposable.Dispose();
        }
        foreach (var pool in Current.Pools.Values)
        {
            pool.Dispose();
        }
        lock (_retired)
        {
            foreach (var invoker in _retired)
            {
                invoker.Dispose();
            }
            _retired.Clear();
        }
    }
}
