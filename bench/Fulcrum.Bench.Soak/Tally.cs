using System.Collections.Concurrent;

/// <summary>What the soak counts: outcomes by kind, and GET latencies by 30 s window.</summary>
internal sealed class Tally
{
    private readonly ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, ConcurrentBag<double>> _latency = new();
    private readonly long _start = Environment.TickCount64;

    public void Count(string kind) => _counts.AddOrUpdate(kind, 1, (_, n) => n + 1);

    public long Get(string kind) => _counts.GetValueOrDefault(kind);

    public IEnumerable<KeyValuePair<string, long>> All => _counts.OrderBy(c => c.Key, StringComparer.Ordinal);

    public void Latency(double ms) => _latency.GetOrAdd((int)((Environment.TickCount64 - _start) / 30_000), _ => []).Add(ms);

    /// <summary>Per 30 s window: requests and the 99th percentile in ms.</summary>
    public IEnumerable<(int Window, int Count, double P99)> Windows() => _latency.OrderBy(w => w.Key).Select(w =>
    {
        var sorted = w.Value.ToArray();
        Array.Sort(sorted);
        return (w.Key, sorted.Length, sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * 0.99))]);
    });
}
