using System.Net;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Resilience;

/// <summary>Per-backend limits and the pool's queue; beyond them, 503 pool_saturated with Retry-After.</summary>
public class LimitTests
{
    private sealed class Gate
    {
        private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _inside;
        private int _max;

        public int Max => Volatile.Read(ref _max);

        public int Inside => Volatile.Read(ref _inside);

        public void Open() => _open.TrySetResult();

        public async Task Handle(HttpContext context)
        {
            var now = Interlocked.Increment(ref _inside);
            int seen;
            while ((seen = Volatile.Read(ref _max)) < now && Interlocked.CompareExchange(ref _max, now, seen) != seen)
            {
            }
            try
            {
                await _open.Task.WaitAsync(TimeSpan.FromSeconds(20));
                await context.Response.WriteAsync("through");
            }
            finally
            {
                Interlocked.Decrement(ref _inside);
            }
        }
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var deadline = Environment.TickCount64 + 10_000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, "the condition never held");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task BeyondMaxRequestsWithNoQueue_Gets503PoolSaturatedWithRetryAfter_AtOnce()
    {
        var gate = new Gate();
        await using var backend = await TestBackend.StartAsync("b", gate.Handle);
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], poolExtra: "    limits: { max_requests: 2 }"));
        var held = new[] { proxy.Client.GetAsync("/1"), proxy.Client.GetAsync("/2") };
        await WaitForAsync(() => gate.Inside == 2);
        using (var third = await proxy.Client.GetAsync("/3"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, third.StatusCode);
            Assert.Equal("pool_saturated", third.Headers.GetValues("Fulcrum-Error").Single());
            Assert.Equal("1", third.Headers.GetValues("Retry-After").Single());
            Assert.Contains("at its limit of requests in flight", await third.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        gate.Open();
        foreach (var r in await Task.WhenAll(held))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        Assert.Equal(1, proxy.Server.Runtime.Pool("main").Saturated);
        Assert.Equal(2, gate.Max);
    }

    [Fact]
    public async Task Queued_IsServedWhenRoomFrees()
    {
        var gate = new Gate();
        await using var backend = await TestBackend.StartAsync("b", gate.Handle);
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], poolExtra: "    limits: { max_requests: 1, max_pending: 5, queue_timeout: 10s }"));
        var first = proxy.Client.GetAsync("/1");
        await WaitForAsync(() => gate.Inside == 1);
        var queued = proxy.Client.GetAsync("/2");
        await WaitForAsync(() => proxy.Server.Runtime.Pool("main").Pending == 1);
        gate.Open();
        Assert.Equal(HttpStatusCode.OK, (await first).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await queued).StatusCode);
        Assert.Equal(1, gate.Max);
    }

    [Fact]
    public async Task QueueWaitRunsOut_Gets503PoolSaturated()
    {
        var gate = new Gate();
        await using var backend = await TestBackend.StartAsync("b", gate.Handle);
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], poolExtra: "    limits: { max_requests: 1, max_pending: 5, queue_timeout: 300ms }"));
        var first = proxy.Client.GetAsync("/1");
        await WaitForAsync(() => gate.Inside == 1);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using (var waited = await proxy.Client.GetAsync("/2"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, waited.StatusCode);
            Assert.Equal("pool_saturated", waited.Headers.GetValues("Fulcrum-Error").Single());
        }
        Assert.InRange(watch.ElapsedMilliseconds, 250, 5000);
        gate.Open();
        (await first).Dispose();
    }

    [Fact]
    public async Task MaxConnections_HoldsTheBackendToThatManyConnections()
    {
        var connections = new System.Collections.Concurrent.ConcurrentDictionary<string, bool>();
        await using var backend = await TestBackend.StartAsync("b", async ctx =>
        {
            connections[ctx.Connection.Id] = true;
            await Task.Delay(50);
            await ctx.Response.WriteAsync("ok");
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], poolExtra: "    limits: { max_connections: 1 }"));
        var responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => proxy.Client.GetAsync($"/{i}")));
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Single(connections);
    }

    [Fact]
    public async Task PerBackendMaxRequests_OverridesThePools()
    {
        var small = new Gate();
        var big = new Gate();
        await using var a = await TestBackend.StartAsync("small", small.Handle);
        await using var b = await TestBackend.StartAsync("big", big.Handle);
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("least_requests",
            [$"{{ address: {a.Address}, max_requests: 1 }}", b.Address], poolExtra: "    limits: { max_requests: 5 }"));
        var requests = Enumerable.Range(0, 6).Select(i => proxy.Client.GetAsync($"/{i}")).ToArray();
        await WaitForAsync(() => small.Inside + big.Inside == 6);
        Assert.Equal(1, small.Max);
        Assert.Equal(5, big.Inside);
        small.Open();
        big.Open();
        Assert.All(await Task.WhenAll(requests), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
    }
}
