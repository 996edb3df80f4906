using System.Collections.Concurrent;
using Fulcrum.Configuration;
using Fulcrum.Health;
using Fulcrum.Runtime;

namespace Fulcrum.Tests.TestSupport;

/// <summary>A health probe whose answer a test sets per backend; it counts the probes it runs.</summary>
public sealed class FakeProbe(TimeProvider time) : IHealthProbe
{
    private readonly ConcurrentDictionary<string, bool> _up = new();
    private readonly ConcurrentDictionary<string, int> _counts = new();
    private int _inFlight;
    private int _maxInFlight;

    /// <summary>Whether backends answer by default (true).</summary>
    public bool DefaultUp { get; set; } = true;

    public void SetUp(string address, bool up) => _up[address] = up;

    public int Count(string address) => _counts.GetValueOrDefault(address);

    public int Total => _counts.Values.Sum();

    public int MaxInFlight => Volatile.Read(ref _maxInFlight);

    public Task<ProbeResult> ProbeAsync(ActiveHealthConfig config, BackendState backend, CancellationToken cancellationToken)
    {
        var now = Interlocked.Increment(ref _inFlight);
        InterlockedMax(ref _maxInFlight, now);
        try
        {
            _counts.AddOrUpdate(backend.Address, 1, (_, c) => c + 1);
            var up = _up.TryGetValue(backend.Address, out var u) ? u : DefaultUp;
            var result = up
                ? new ProbeResult(true, $"{config.Method} {config.Path} answered 200", 200, TimeSpan.FromMilliseconds(1), time.GetUtcNow())
                : new ProbeResult(false, $"health check got 503 from {config.Method} {config.Path}, expected {config.ExpectedText}", 503, TimeSpan.FromMilliseconds(1), time.GetUtcNow());
            return Task.FromResult(result);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
