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

    private readonly ConcurrentDictionary<int, double> _memory = new();

    private int Window => (int)((Environment.TickCount64 - _start) / 30_000);

    public void Latency(double ms) => _latency.GetOrAdd(Window, _ => []).Add(ms);

    /// <summary>The resident memory sampled at the end of a window (taken just after it closes).</summary>
    public void Memory(double rssMiB) => _memory[Math.Max(0, Window - 1)] = rssMiB;

    /// <summary>Per 30 s window: requests, the 99th percentile in ms, and the memory at its end (0: not sampled).</summary>
    public IEnumerable<(int Window, int Count, double P99, double RssMiB)> Windows() => _latency.OrderBy(w => w.Key).Select(w =>
    {
        var sorted = w.Value.ToArray();
        Array.Sort(sorted);
        return (w.Key, sorted.Length, sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * 0.99))], _memory.GetValueOrDefault(w.Key));
    });
}
