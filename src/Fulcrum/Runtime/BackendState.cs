using Fulcrum.Configuration;

namespace Fulcrum.Runtime;

/// <summary>
/// One backend's long-lived state: its configuration and the counters the balancer reads. It has
/// identity (its pool plus its address), so that a reload which keeps the backend keeps this object.
/// </summary>
public sealed class BackendState
{
    private BackendConfig _config;
    private int _inFlight;
    private long _requests;
    private long _failures;

    public BackendState(string pool, BackendConfig config)
    {
        Pool = pool;
        _config = config;
        BaseUri = $"http://{config.Endpoint.UriHost}:{config.Endpoint.Port}";
    }

    public string Pool { get; }

    public BackendConfig Config => Volatile.Read(ref _config);

    /// <summary>The address as written in configuration: the backend's identity within its pool.</summary>
    public string Address => Config.Address;

    /// <summary>The name a person sees: the configured name, else the address.</summary>
    public string DisplayName => Config.Name ?? Config.Address;

    /// <summary><c>http://host:port</c>, the start of every upstream request URI.</summary>
    public string BaseUri { get; }

    public int Weight => Config.Weight;

    public int InFlight => Volatile.Read(ref _inFlight);

    public long Requests => Interlocked.Read(ref _requests);

    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Smooth round robin's running score; read and written only under the pool's balancer lock.</summary>
    internal long SmoothWeight { get; set; }

    internal void UpdateConfig(BackendConfig config) => Volatile.Write(ref _config, config);

    /// <summary>Counts a request as started; pair with <see cref="EndRequest"/>.</summary>
    public void BeginRequest()
    {
        Interlocked.Increment(ref _inFlight);
        Interlocked.Increment(ref _requests);
    }

    public void EndRequest(bool failed)
    {
        Interlocked.Decrement(ref _inFlight);
        if (failed)
        {
            Interlocked.Increment(ref _failures);
        }
    }

    public override string ToString() => $"{Pool}/{DisplayName}";
}
