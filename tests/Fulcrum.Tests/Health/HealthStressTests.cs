using Fulcrum.Forwarding;
using Fulcrum.Health;
using Fulcrum.Runtime;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Health;

public class HealthStressTests
{
    [Fact]
    public async Task TenThousandRandomTransitionsOnEightThreads_RouterHealthAndHistoryAlwaysAgree()
    {
        using var h = HealthHarness.Start("""
                health:
                  active: { path: /h, interval: 1s, fast_interval: 1s, healthy_after: 2, unhealthy_after: 2 }
                  passive: { consecutive_failures: 2, consecutive_5xx: 2, ejection: 1s, max_ejected_percent: 100 }
            """, backends: 4);
        var pool = h.Pool;
        var backends = pool.Backends.ToArray();
        var violations = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var done = 0;
        const int PerThread = 1250;

        // Dedicated threads (LongRunning), not thread-pool ones: eight busy workers would starve
        // the tests running beside this one on a two-core machine.
        var sampler = Task.Factory.StartNew(() =>
        {
            var samples = 0;
            while (Volatile.Read(ref done) == 0 || samples < 100)
            {
                foreach (var b in backends)
                {
                    var (health, last, routed) = h.Authority.Sample(pool, b);
                    if (last is not null && last.To != health.Status)
                    {
                        violations.Enqueue($"{b}: health says {health.Status}, history ends at {last.To}");
                    }
                    if (routed != health.TakesTraffic)
                    {
                        violations.Enqueue($"{b}: routed={routed} but status {health.Status}");
                    }
                }
                samples++;
            }
            return samples;
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        var workers = Enumerable.Range(0, 8).Select(seed => Task.Factory.StartNew(() =>
        {
            var random = new Random(seed);
            for (var i = 0; i < PerThread; i++)
            {
                var b = backends[random.Next(backends.Length)];
                switch (random.Next(8))
                {
                    case 0:
                    case 1:
                        h.Authority.ReportProbe(pool, b, new ProbeResult(random.Next(3) > 0, "probe", 200, TimeSpan.Zero, h.Time.GetUtcNow()));
                        break;
                    case 2:
                        h.Authority.ReportTraffic(pool, b, new ForwardResult(FulcrumError.ConnectRefused, "connection refused", 0, false, false));
                        break;
                    case 3:
                        h.Authority.ReportTraffic(pool, b, ForwardResult.Success(random.Next(2) == 0 ? 200 : 503));
                        break;
                    case 4:
                        h.Authority.SetOverride(pool, b, (OverrideKind)random.Next(3), "stress", "test");
                        break;
                    case 5:
                        h.Authority.ClearOverride(pool, b);
                        break;
                    default:
                        lock (h.Time)
                        {
                            h.Time.Advance(TimeSpan.FromMilliseconds(random.Next(500)));
                        }
                        break;
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        await Task.WhenAll(workers);
        Volatile.Write(ref done, 1);
        var sampled = await sampler;

        Assert.True(violations.IsEmpty, string.Join("\n", violations.Take(10)));
        Assert.True(sampled >= 100);
        foreach (var b in backends)
        {
            var events = b.History.Snapshot();
            Assert.NotEmpty(events);
            for (var i = 1; i < events.Count; i++)
            {
                // No impossible transition: each event starts where the previous one ended, and changes something.
                Assert.Equal(events[i - 1].To, events[i].From);
                Assert.NotEqual(events[i].From, events[i].To);
            }
            Assert.Equal(b.Health.Status, events[^1].To);
        }
    }
}
