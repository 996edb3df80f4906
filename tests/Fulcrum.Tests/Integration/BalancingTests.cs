using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Integration;

/// <summary>Traffic through real sockets lands where the policy says.</summary>
public class BalancingTests
{
    [Fact]
    public async Task RoundRobin_Weights123_Over6000Requests_LandWithin5Percent()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        await using var c = await TestBackend.StartAsync("c");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [
            $"{{ address: {a.Address}, weight: 1 }}",
            $"{{ address: {b.Address}, weight: 2 }}",
            $"{{ address: {c.Address}, weight: 3 }}",
        ]));
        await SendAsync(proxy, 6000, parallel: 8);
        Assert.InRange(a.Count, 950, 1050);
        Assert.InRange(b.Count, 1900, 2100);
        Assert.InRange(c.Count, 2850, 3150);
        Assert.Equal(6000, a.Count + b.Count + c.Count);
    }

    [Fact]
    public async Task RoundRobin_EqualWeights_IsExactlyEven()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        await using var c = await TestBackend.StartAsync("c");
        await using var proxy = await TestProxy.StartAsync("round_robin", a, b, c);
        await SendAsync(proxy, 300, parallel: 6);
        Assert.Equal(100, a.Count);
        Assert.Equal(100, b.Count);
        Assert.Equal(100, c.Count);
    }

    [Fact]
    public async Task LeastRequests_SlowBackend_GetsFewerRequests()
    {
        await using var slow = await TestBackend.StartAsync("slow", async ctx => await Task.Delay(200));
        await using var fast = await TestBackend.StartAsync("fast");
        await using var proxy = await TestProxy.StartAsync("least_requests", slow, fast);
        await SendAsync(proxy, 200, parallel: 8);
        // Requests pile up on the slow backend, so least requests sends nearly everything elsewhere.
        Assert.True(fast.Count > 5 * slow.Count, $"fast {fast.Count}, slow {slow.Count}");
    }

    [Fact]
    public async Task First_SendsEverythingToTheFirstBackend()
    {
        await using var primary = await TestBackend.StartAsync("primary");
        await using var backup = await TestBackend.StartAsync("backup");
        await using var proxy = await TestProxy.StartAsync("first", primary, backup);
        await SendAsync(proxy, 50, parallel: 4);
        Assert.Equal(50, primary.Count);
        Assert.Equal(0, backup.Count);
    }

    [Fact]
    public async Task First_PrimaryDown_BackupTakesOver()
    {
        await using var backup = await TestBackend.StartAsync("backup");
        using var deadPort = Ports.Refusing();
        var dead = deadPort.Port;
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [$"127.0.0.1:{dead}", backup.Address]));
        await SendAsync(proxy, 20, parallel: 2);
        Assert.Equal(20, backup.Count);
    }

    internal static async Task SendAsync(TestProxy proxy, int count, int parallel)
    {
        var next = -1;
        var workers = Enumerable.Range(0, parallel).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) < count)
            {
                using var response = await proxy.Client.GetAsync("/");
                Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                await response.Content.ReadAsByteArrayAsync();
            }
        });
        await Task.WhenAll(workers);
    }
}
