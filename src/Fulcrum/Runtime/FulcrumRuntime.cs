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
    private readonly RuntimeSnapshot _current;
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
            pools[pool.Name] = new PoolState(pool, UpstreamHandlerFactory.CreateInvoker(), Time);
        }
        var frozen = pools.ToFrozenDictionary(StringComparer.Ordinal);
        _current = new RuntimeSnapshot(config, RouteTable.Build(config, frozen), frozen);

        var stateFile = config.EffectiveStateFile is { } path ? new HealthStateFile(path) : null;
        Health = new HealthAuthority(Time, (loggers ?? NullLoggerFactory.Instance).CreateLogger("Fulcrum.Health"), stateFile, () => Current.Pools.Values);
        _ownsProbe = probe is null;
        _probe = probe ?? new NetworkHealthProbe(Time);
        Prober = new ActiveProber(Health, _probe, Time);

        // Admin decisions made before a restart apply again, matched by pool and address.
        var restored = (stateFile?.Load() ?? []).ToDictionary(o => (o.Pool, o.Backend.ToUpperInvariant()));
        foreach (var pool in frozen.Values)
        {
            foreach (var backend in pool.Backends)
            {
                AdminOverride? saved = null;
                if (restored.TryGetValue((pool.Name, backend.Address.ToUpperInvariant()), out var o) && AdminOverride.Parse(o.Kind) is { } kind)
                {
                    saved = new AdminOverride(kind, o.Reason, o.By, o.Since, o.Expires);
                }
                Health.Attach(pool, backend, saved, rampUp: false);
            }
        }
    }

    public TimeProvider Time { get; }

    public RuntimeSnapshot Current => _current;

    /// <summary>The one writer of backend health.</summary>
    public HealthAuthority Health { get; }

    public ActiveProber Prober { get; }

    /// <summary>Starts the probe loops: every backend of a pool with active checks is probed at once.</summary>
    public void Start()
    {
        foreach (var pool in Current.Pools.Values)
        {
            foreach (var backend in pool.Backends)
            {
                Prober.Start(pool, backend);
            }
        }
    }

    public PoolState Pool(string name) =>
        Current.Pools.TryGetValue(name, out var pool) ? pool : throw new KeyNotFoundException($"no pool named '{name}'");

    /// <summary>
    /// Registers a backend at runtime: it starts pending and is probed at once (healthy at once when
    /// the pool has no active checks). Registering an address the pool already has returns that backend.
    /// </summary>
    public BackendState AddBackend(string pool, BackendConfig backend)
    {
        var state = Pool(pool);
        var added = Health.Add(state, backend, out var isNew);
        if (isNew)
        {
            Prober.Start(state, added);
        }
        return added;
    }

    /// <summary>Removes a backend: no new traffic, its probes stop; requests in flight finish.</summary>
    public bool RemoveBackend(string pool, string nameOrAddress)
    {
        var state = Pool(pool);
        if (state.Find(nameOrAddress) is not { } backend)
        {
            return false;
        }
        Prober.Stop(backend);
        Health.Remove(state, backend);
        return true;
    }

    public void Dispose()
    {
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
    }
}
