using Fulcrum.Configuration;
using Fulcrum.Health;

namespace Fulcrum.Runtime;

/// <summary>
/// One backend's long-lived state: its configuration, its health and the counters the balancer
/// reads. It has identity (its pool plus its address), so that a reload which keeps the backend
/// keeps this object, its health and its history.
/// </summary>
public sealed class BackendState
{
    /// <summary>Weights are scaled so that slow start can ramp a weight of 1 in small steps.</summary>
    internal const int WeightScale = 100;

    private readonly TimeProvider _time;
    private BackendConfig _config;
    private BackendHealth _health;
    private int _inFlight;
    private long _requests;
    private long _failures;
    private long _slowStartFrom;
    private int _passiveFailures;
    private int _passive5xx;

    public BackendState(string pool, BackendConfig config, TimeProvider? time = null, TimeSpan slowStart = default)
    {
        Pool = pool;
        _config = config;
        _time = time ?? TimeProvider.System;
        SlowStart = slowStart;
        BaseUri = $"http://{config.Endpoint.UriHost}:{config.Endpoint.Port}";
        Authority = config.Endpoint.Port == 80 ? config.Endpoint.UriHost : $"{config.Endpoint.UriHost}:{config.Endpoint.Port}";
        Connections = new Forwarding.Http1.Http1ConnectionPool(config.Endpoint);
        _health = new BackendHealth(HealthStatus.Pending, "not yet evaluated", _time.GetUtcNow(), HealthSource.Config, null, null, null);
    }

    public string Pool { get; }

    public BackendConfig Config => Volatile.Read(ref _config);

    /// <summary>The address as written in configuration: the backend's identity within its pool.</summary>
    public string Address => Config.Address;

    /// <summary>The name a person sees: the configured name, else the address.</summary>
    public string DisplayName => Config.Name ?? Config.Address;

    /// <summary><c>http://host:port</c>, the start of every upstream request URI.</summary>
    public string BaseUri { get; }

    /// <summary><c>host:port</c> (the port left out when 80), the Host header when the pool sends the backend's own.</summary>
    public string Authority { get; }

    /// <summary>The pool it serves in (set when it joins one): health probes take its TLS settings from there.</summary>
    internal PoolState? Owner { get; set; }

    /// <summary>Fulcrum's kept-alive HTTP/1.1 connections to this backend.</summary>
    internal Forwarding.Http1.Http1ConnectionPool Connections { get; }

    /// <summary>The configured weight.</summary>
    public int Weight => Config.Weight;

    /// <summary>The pool's slow-start time (a reload may change it).</summary>
    public TimeSpan SlowStart { get; internal set; }

    /// <summary>
    /// The weight balancing uses, scaled by <see cref="WeightScale"/>: the configured weight, or
    /// during slow start a share of it that grows linearly from 10% to 100%.
    /// </summary>
    public int EffectiveWeight
    {
        get
        {
            var full = Config.Weight * WeightScale;
            var from = Volatile.Read(ref _slowStartFrom);
            if (from == 0)
            {
                return full;
            }
            var elapsed = _time.GetElapsedTime(from);
            if (elapsed >= SlowStart)
            {
                // Only if no newer ramp began meanwhile (a backend flapping back to healthy).
                Interlocked.CompareExchange(ref _slowStartFrom, 0, from);
                return full;
            }
            return Math.Max(1, (int)(full * (0.1 + 0.9 * (elapsed / SlowStart))));
        }
    }

    /// <summary>The one health value; written only by <see cref="HealthAuthority"/>.</summary>
    public BackendHealth Health => Volatile.Read(ref _health);

    public HealthHistory History { get; } = new();

    public int InFlight => Volatile.Read(ref _inFlight);

    public long Requests => Interlocked.Read(ref _requests);

    private int _tunnels;

    /// <summary>Open tunnels (WebSocket and other upgrades) to this backend. Each also counts in <see cref="InFlight"/>.</summary>
    public int Tunnels => Volatile.Read(ref _tunnels);

    internal void BeginTunnel() => Interlocked.Increment(ref _tunnels);

    internal void EndTunnel() => Interlocked.Decrement(ref _tunnels);

    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>
    /// Healthy only because nothing says otherwise: the pool runs no active check and the backend
    /// has answered no request yet. Shown as such (admin API, <c>fulcrum status</c>, metrics), so
    /// nobody reads "healthy" as "proven". Derived from the counters; the request path pays nothing.
    /// </summary>
    public bool Unchecked => Health is { Status: HealthStatus.Healthy, Source: HealthSource.Config } && Requests - Failures - InFlight <= 0;

    /// <summary>Smooth round robin's running score; read and written only under the pool's balancer lock.</summary>
    internal long SmoothWeight { get; set; }

    /// <summary>Inputs of the health computation; touched only by the authority under the pool's health lock.</summary>
    internal HealthInputs Inputs { get; } = new();

    private volatile bool _detached;

    /// <summary>Set once the backend has left its pool: late probe results about it are ignored.</summary>
    internal bool Detached
    {
        get => _detached;
        set => _detached = value;
    }

    /// <summary>When the backend left its pool (meaningful once <see cref="Detached"/>).</summary>
    internal DateTimeOffset DetachedAt { get; set; }

    /// <summary>True until a start-up backend's first probe: passing it is not a recovery, so no slow start.</summary>
    internal bool SkipFirstRamp { get; set; }

    internal ref int PassiveFailures => ref _passiveFailures;

    internal ref int Passive5xx => ref _passive5xx;

    internal void PublishHealth(BackendHealth health) => Volatile.Write(ref _health, health);

    /// <summary>Starts the slow-start ramp now (the backend just became healthy).</summary>
    internal void BeginSlowStart()
    {
        if (SlowStart > TimeSpan.Zero)
        {
            Volatile.Write(ref _slowStartFrom, _time.GetTimestamp());
        }
    }

    private ProbeTarget? _probeTarget;

    /// <summary>The HTTP probe's request parts for this backend, built on first use.</summary>
    internal ProbeTarget ProbeTarget(ActiveHealthConfig config, int port)
    {
        var target = Volatile.Read(ref _probeTarget);
        if (target is null || target.Uri.Port != port || !ReferenceEquals(target.Config, config))
        {
            target = Fulcrum.Health.ProbeTarget.For(config, Config.Endpoint, port);
            Volatile.Write(ref _probeTarget, target);
        }
        return target;
    }

    internal void UpdateConfig(BackendConfig config) => Volatile.Write(ref _config, config);

    /// <summary>
    /// Counts a request as started if the backend has room under <paramref name="max"/> requests in
    /// flight (0: no limit); pair a true answer with <see cref="EndRequest"/>.
    /// </summary>
    public bool TryBeginRequest(int max)
    {
        if (max <= 0)
        {
            BeginRequest();
            return true;
        }
        if (Interlocked.Increment(ref _inFlight) > max)
        {
            Interlocked.Decrement(ref _inFlight);
            return false;
        }
        Interlocked.Increment(ref _requests);
        return true;
    }

    /// <summary>The limit of requests in flight that applies to this backend (0: none).</summary>
    internal int MaxRequests(LimitsConfig limits) => Config.MaxRequests > 0 ? Config.MaxRequests : limits.MaxRequests;

    /// <summary>Counts a request as started; pair with <see cref="EndRequest"/>.</summary>
    public void BeginRequest()
    {
        Interlocked.Increment(ref _inFlight);
        Interlocked.Increment(ref _requests);
    }

    /// <summary>Called when a request ends, so a request waiting for room can look again.</summary>
    internal Action? RoomFreed { get; set; }

    public void EndRequest(bool failed)
    {
        Interlocked.Decrement(ref _inFlight);
        RoomFreed?.Invoke();
        if (failed)
        {
            Interlocked.Increment(ref _failures);
        }
    }

    public override string ToString() => $"{Pool}/{DisplayName}";
}
