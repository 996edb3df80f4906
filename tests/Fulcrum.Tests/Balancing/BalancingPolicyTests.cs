using Fulcrum.Balancing;
using Fulcrum.Configuration;
using Fulcrum.Runtime;

namespace Fulcrum.Tests.Balancing;

public class BalancingPolicyTests
{
    private static PoolState Pool(string policy, params int[] weights)
    {
        var backends = weights.Select((w, i) => new BackendConfig($"10.0.0.{i + 1}:80", new HostPort($"10.0.0.{i + 1}", 80), w, $"b{i}"));
        var pool = new PoolConfig("p", policy, new(backends), TimeoutsConfig.Unset, HostHeaderMode.Preserve);
        var route = new RouteConfig("r", RouteMatchConfig.Any, "p", TimeoutsConfig.Unset);
        var config = new FulcrumConfig(EquatableList<ListenerConfig>.Empty, new([route]), new([pool]), null, AccessLogConfig.Default);
        // Without active checks every backend starts healthy and available.
        return new FulcrumRuntime(config).Pool("p");
    }

    private static Dictionary<string, int> Count(PoolState pool, int picks)
    {
        var counts = pool.Backends.ToDictionary(b => b.DisplayName, _ => 0);
        for (var i = 0; i < picks; i++)
        {
            counts[pool.Policy.Pick(pool, pool.Available).DisplayName]++;
        }
        return counts;
    }

    [Fact]
    public void RoundRobin_EqualWeights_IsExactlyEvenAndInOrder()
    {
        using var pool = Pool(BalancingPolicies.RoundRobin, 1, 1, 1);
        var order = Enumerable.Range(0, 9).Select(_ => pool.Policy.Pick(pool, pool.Available).DisplayName).ToList();
        Assert.Equal(["b0", "b1", "b2", "b0", "b1", "b2", "b0", "b1", "b2"], order);
    }

    [Fact]
    public void RoundRobin_Weights_AreExactOverACycleAndSmooth()
    {
        using var pool = Pool(BalancingPolicies.RoundRobin, 5, 1, 1);
        var order = Enumerable.Range(0, 7).Select(_ => pool.Policy.Pick(pool, pool.Available).DisplayName).ToList();
        // nginx's smooth weighted round robin: the heavy backend never takes five in a row.
        Assert.Equal(["b0", "b0", "b1", "b0", "b2", "b0", "b0"], order);
        var counts = Count(pool, 7000);
        Assert.Equal(5000, counts["b0"]);
        Assert.Equal(1000, counts["b1"]);
        Assert.Equal(1000, counts["b2"]);
    }

    [Theory]
    [InlineData(BalancingPolicies.Random)]
    [InlineData(BalancingPolicies.PowerOfTwo)]
    [InlineData(BalancingPolicies.LeastRequests)]
    public void IdleBackends_TrafficFollowsWeights(string policy)
    {
        using var pool = Pool(policy, 1, 2, 3);
        var counts = Count(pool, 60_000);
        // Expected 10k/20k/30k; 5% is more than 10 standard deviations here, so this cannot flake.
        Assert.InRange(counts["b0"], 9_500, 10_500);
        Assert.InRange(counts["b1"], 19_000, 21_000);
        Assert.InRange(counts["b2"], 28_500, 31_500);
    }

    [Fact]
    public void LeastRequests_PicksTheLeastLoaded()
    {
        using var pool = Pool(BalancingPolicies.LeastRequests, 1, 1, 1);
        var b = pool.Backends;
        b[0].BeginRequest();
        b[0].BeginRequest();
        b[2].BeginRequest();
        Assert.Same(b[1], pool.Policy.Pick(pool, pool.Available));
        b[1].BeginRequest();
        b[1].BeginRequest();
        Assert.Same(b[2], pool.Policy.Pick(pool, pool.Available));
    }

    [Fact]
    public void LeastRequests_IdleBackends_ShareTrafficByWeight()
    {
        // Sequential traffic keeps every backend idle: ties are drawn by weight, not given to the first.
        using var pool = Pool(BalancingPolicies.LeastRequests, 1, 2, 3);
        var counts = Count(pool, 60_000);
        Assert.InRange(counts["b0"], 9_500, 10_500);
        Assert.InRange(counts["b1"], 19_000, 21_000);
        Assert.InRange(counts["b2"], 28_500, 31_500);
    }

    [Fact]
    public void LeastRequests_WeighsLoadByWeight()
    {
        using var pool = Pool(BalancingPolicies.LeastRequests, 1, 4);
        var b = pool.Backends;
        // b1 has 3 in flight but 4 times the weight: 3/4 per unit of weight, against b0's 1/1.
        b[0].BeginRequest();
        for (var i = 0; i < 3; i++)
        {
            b[1].BeginRequest();
        }
        Assert.Same(b[1], pool.Policy.Pick(pool, pool.Available));
    }

    [Fact]
    public void PowerOfTwo_NeverPicksTheMostLoadedOfThree()
    {
        using var pool = Pool(BalancingPolicies.PowerOfTwo, 1, 1, 1);
        for (var i = 0; i < 10; i++)
        {
            pool.Backends[1].BeginRequest();
        }
        // Any two distinct draws include a backend less loaded than b1, which then wins.
        var counts = Count(pool, 1000);
        Assert.Equal(0, counts["b1"]);
    }

    [Fact]
    public void First_AlwaysTakesTheFirstCandidate()
    {
        using var pool = Pool(BalancingPolicies.First, 1, 1, 1);
        Assert.All(Enumerable.Range(0, 10), _ => Assert.Same(pool.Backends[0], pool.Policy.Pick(pool, pool.Available)));
        Assert.Same(pool.Backends[1], pool.Policy.Pick(pool, pool.Available[1..]));
    }

    [Fact]
    public void EveryPolicy_WithOneCandidate_PicksIt()
    {
        foreach (var name in BalancingPolicies.Names)
        {
            using var pool = Pool(name, 7);
            Assert.Same(pool.Backends[0], pool.Policy.Pick(pool, pool.Available));
        }
    }

    [Fact]
    public void Get_UnknownName_Throws() =>
        Assert.Throws<ArgumentException>(() => BalancingPolicies.Get("fastest"));

    [Theory]
    [InlineData(BalancingPolicies.LeastRequests)]
    [InlineData(BalancingPolicies.PowerOfTwo)]
    [InlineData(BalancingPolicies.RoundRobin)]
    public async Task Pick_WhileInFlightCountsChangeOnOtherThreads_AlwaysReturnsACandidate(string policy)
    {
        using var pool = Pool(policy, 1, 1, 2);
        using var stop = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        // Other threads move the counters the policy reads, as real requests do. They are
        // dedicated threads: spinning on thread-pool threads would starve the tests running
        // beside this one on a two-core machine.
        var churn = Enumerable.Range(0, 3).Select(i => Task.Factory.StartNew(() =>
        {
            var b = pool.Backends[i];
            while (!stop.IsCancellationRequested)
            {
                b.BeginRequest();
                b.EndRequest(failed: false);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        var picks = 0;
        while (!stop.IsCancellationRequested)
        {
            Assert.Contains(pool.Policy.Pick(pool, pool.Available), pool.Backends);
            picks++;
        }
        await Task.WhenAll(churn);
        Assert.True(picks > 1000);
    }
}
