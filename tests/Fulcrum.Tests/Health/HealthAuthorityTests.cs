using Fulcrum.Health;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Health;

public class HealthAuthorityTests
{
    private const string Active = """
            health:
              active: { path: /health/ready, interval: 30s, fast_interval: 1s, jitter: 0s, healthy_after: 2, unhealthy_after: 3 }
        """;

    [Fact]
    public void WithoutActiveChecks_BackendsStartHealthy()
    {
        using var h = HealthHarness.Start("");
        Assert.All(h.Pool.Backends, b => Assert.Equal(HealthStatus.Healthy, b.Health.Status));
        Assert.Equal(HealthSource.Config, h[0].Health.Source);
        Assert.Equal(3, h.Pool.Available.Length);
    }

    [Fact]
    public void NewBackend_IsProbedAtOnce_AndHealthyOnItsFirstPassingProbe_EvenWithA30sInterval()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time) { DefaultUp = false };
        using var h = HealthHarness.Start(Active, probe: probe, time: time);
        // The immediate probe ran at start and failed: still pending, not routed.
        Assert.Equal(HealthStatus.Pending, h.Status(0));
        Assert.False(h.Routed(0));
        Assert.Contains("waiting for a passing health check (1 of 3 failed)", h[0].Health.Reason, StringComparison.Ordinal);

        probe.SetUp("10.0.0.1:80", true);
        h.Advance(1); // fast_interval while pending
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
        Assert.True(h.Routed(0));
        Assert.Equal("health check passed: GET /health/ready answered 200", h[0].Health.Reason);
    }

    [Fact]
    public void HealthyBackend_TurnsUnhealthyAfterUnhealthyAfterFailures_AndBackAfterHealthyAfterSuccesses()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time);
        using var h = HealthHarness.Start(Active, probe: probe, time: time);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));

        probe.SetUp("10.0.0.1:80", false);
        h.Advance(30);
        h.Advance(1);
        Assert.Equal(HealthStatus.Healthy, h.Status(0)); // 2 failures of 3
        h.Advance(1);
        Assert.Equal(HealthStatus.Unhealthy, h.Status(0));
        Assert.Equal("health check got 503 from GET /health/ready, expected 200-399", h[0].Health.Reason);
        Assert.False(h.Routed(0));

        probe.SetUp("10.0.0.1:80", true);
        h.Advance(1);
        Assert.Equal(HealthStatus.Unhealthy, h.Status(0)); // 1 success of 2
        h.Advance(1);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
        Assert.True(h.Routed(0));
    }

    [Fact]
    public void Probes_NeverOverlap_AndUseTheIntervalWhileHealthy()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time);
        using var h = HealthHarness.Start(Active, probe: probe, time: time);
        Assert.Equal(1, probe.Count("10.0.0.1:80"));
        h.Advance(29);
        Assert.Equal(1, probe.Count("10.0.0.1:80"));
        h.Advance(1);
        Assert.Equal(2, probe.Count("10.0.0.1:80"));
        h.Advance(300);
        Assert.Equal(12, probe.Count("10.0.0.1:80"));
        Assert.Equal(1, probe.MaxInFlight);
        Assert.Equal(3, h.Runtime.Prober.LoopCount);
    }

    [Fact]
    public void AdminDisable_StaysOutThroughTenProbeCycles_AndEnableRestoresItWithinOneProbe()
    {
        using var h = HealthHarness.Start(Active);
        h.Authority.SetOverride(h.Pool, h[1], OverrideKind.Disable, "kernel upgrade", "alice");
        for (var cycle = 0; cycle < 10; cycle++)
        {
            h.Advance(30);
            var (health, last, routed) = h.Authority.Sample(h.Pool, h[1]);
            Assert.Equal(HealthStatus.Disabled, health.Status);
            Assert.False(routed);
            Assert.Equal(HealthStatus.Disabled, last!.To);
        }
        Assert.Equal("disabled by alice: kernel upgrade", h[1].Health.Reason);
        Assert.Equal(HealthSource.Admin, h[1].Health.Source);
        Assert.True(h.Probe.Count("10.0.0.2:80") >= 11, "probes keep running while disabled");

        h.Authority.ClearOverride(h.Pool, h[1]);
        Assert.Equal(HealthStatus.Healthy, h.Status(1));
        Assert.True(h.Routed(1));
    }

    [Fact]
    public void Override_WithTtl_LapsesOnTime()
    {
        using var h = HealthHarness.Start("");
        h.Authority.SetOverride(h.Pool, h[0], OverrideKind.Drain, "deploy", "ci", TimeSpan.FromMinutes(10));
        Assert.Equal(HealthStatus.Draining, h.Status(0));
        h.Advance(599);
        Assert.Equal(HealthStatus.Draining, h.Status(0));
        h.Advance(1);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
    }

    [Fact]
    public void ForceHealthy_OutranksFailingProbes()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time) { DefaultUp = false };
        using var h = HealthHarness.Start(Active, probe: probe, time: time);
        h.Authority.SetOverride(h.Pool, h[0], OverrideKind.ForceHealthy, "the check is wrong, traffic is fine", "bob");
        h.Advance(10);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
        Assert.True(h.Routed(0));
        Assert.Equal(HealthStatus.Unhealthy, h.Status(1));
    }

    [Fact]
    public void Passive_ConsecutiveFailures_Eject_AndWithoutActiveChecksTheEjectionEndsOnTime()
    {
        using var h = HealthHarness.Start("    health: { passive: { consecutive_failures: 5, ejection: 30s } }");
        h.Traffic(0, HealthHarness.Refused, 4);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
        h.Traffic(0, HealthHarness.Refused);
        Assert.Equal(HealthStatus.Ejected, h.Status(0));
        Assert.False(h.Routed(0));
        Assert.Equal("ejected for 30s after 5 consecutive failures in traffic (last: connect_refused: connection refused)", h[0].Health.Reason);
        h.Advance(29.9);
        Assert.Equal(HealthStatus.Ejected, h.Status(0));
        h.Advance(0.1);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
    }

    [Fact]
    public void Passive_ASuccessResetsTheStreak()
    {
        using var h = HealthHarness.Start("");
        h.Traffic(0, HealthHarness.Refused, 4);
        h.Traffic(0, HealthHarness.Ok);
        h.Traffic(0, HealthHarness.Refused, 4);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
    }

    [Fact]
    public void Passive_Consecutive5xx_Eject()
    {
        using var h = HealthHarness.Start("    health: { passive: { consecutive_5xx: 3, failure_statuses: [503] } }");
        h.Traffic(0, HealthHarness.Unavailable, 3);
        Assert.Equal(HealthStatus.Ejected, h.Status(0));
        Assert.Contains("3 consecutive 503 responses", h[0].Health.Reason, StringComparison.Ordinal);
        h.Traffic(1, ForwardResultWith(500), 10);
        Assert.Equal(HealthStatus.Healthy, h.Status(1)); // 500 is not in failure_statuses
    }

    [Fact]
    public void Passive_RepeatedEjections_GrowAndAreCapped()
    {
        using var h = HealthHarness.Start("    health: { passive: { consecutive_failures: 1, ejection: 1m, max_ejection: 3m } }");
        var durations = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            h.Traffic(0, HealthHarness.Refused);
            durations.Add(h[0].Health.Reason.Split(' ')[2]);
            // Eject again the moment it returns; a long good spell would forgive earlier ejections.
            h.Time.Advance(h[0].Health.EjectedUntil!.Value - h.Time.GetUtcNow());
            Assert.Equal(HealthStatus.Healthy, h.Status(0));
        }
        Assert.Equal(["1m", "2m", "3m", "3m"], durations);
    }

    [Fact]
    public void Passive_MaxEjectedPercent_KeepsAFaultSharedByAllFromEmptyingThePool()
    {
        using var h = HealthHarness.Start("    health: { passive: { consecutive_failures: 1, max_ejected_percent: 50 } }", backends: 4);
        for (var i = 0; i < 4; i++)
        {
            h.Traffic(i, HealthHarness.Refused);
        }
        Assert.Equal(2, h.Pool.Backends.Count(b => b.Health.Status == HealthStatus.Ejected));
        Assert.Equal(2, h.Pool.Available.Length);
    }

    [Fact]
    public void Passive_NeverBelowOneBackend_EvenAtZeroPercent()
    {
        using var h = HealthHarness.Start("    health: { passive: { consecutive_failures: 1, max_ejected_percent: 0 } }");
        h.Traffic(0, HealthHarness.Refused);
        h.Traffic(1, HealthHarness.Refused);
        Assert.Equal(1, h.Pool.Backends.Count(b => b.Health.Status == HealthStatus.Ejected));
    }

    [Fact]
    public void Passive_WithActiveChecks_TheBackendReturnsAfterHealthyAfterPassingProbes()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time);
        using var h = HealthHarness.Start("""
                health:
                  active: { path: /health, interval: 10s, fast_interval: 2s, jitter: 0s, healthy_after: 2 }
                  passive: { consecutive_failures: 1, ejection: 30s }
            """, probe: probe, time: time);
        probe.SetUp("10.0.0.1:80", false);
        h.Traffic(0, HealthHarness.Refused);
        Assert.Equal(HealthStatus.Ejected, h.Status(0));
        Assert.Contains("back after 2 passing health check(s) in a row (0 so far)", h[0].Health.Reason, StringComparison.Ordinal);
        // While ejected the backend is probed every fast_interval; failing probes keep it out.
        h.Advance(10);
        Assert.Equal(HealthStatus.Ejected, h.Status(0));
        probe.SetUp("10.0.0.1:80", true);
        var before = probe.Count("10.0.0.1:80");
        h.Advance(2);
        Assert.Equal(HealthStatus.Ejected, h.Status(0)); // one pass of two
        h.Advance(2);
        Assert.Equal(HealthStatus.Healthy, h.Status(0)); // within its probe settings, long before 30 s
        Assert.Equal(before + 2, probe.Count("10.0.0.1:80"));
    }

    [Fact]
    public void SlowStart_RampsEffectiveWeightFrom10To100Percent()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time) { DefaultUp = false };
        using var h = HealthHarness.Start(Active + "\n    slow_start: 100s", probe: probe, time: time);
        probe.SetUp("10.0.0.1:80", true);
        h.Advance(1);
        Assert.Equal(HealthStatus.Healthy, h.Status(0));
        Assert.Equal(10, h[0].EffectiveWeight);
        h.Advance(50);
        Assert.InRange(h[0].EffectiveWeight, 54, 56);
        h.Advance(50);
        Assert.Equal(100, h[0].EffectiveWeight);
    }

    [Fact]
    public void NoneHealthy_Fail_LeavesNothingAvailable_RouteAnyway_FailsOpenButNotAgainstAnAdmin()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time) { DefaultUp = false };
        using (var failing = HealthHarness.Start(Active, probe: probe, time: time))
        {
            failing.Advance(5);
            Assert.Empty(failing.Pool.Available);
        }
        var time2 = new ManualTimeProvider();
        using var h = HealthHarness.Start(Active + "\n    when_none_healthy: route_anyway", probe: new FakeProbe(time2) { DefaultUp = false }, time: time2);
        h.Advance(5);
        h.Authority.SetOverride(h.Pool, h[2], OverrideKind.Disable, "broken disk", "ops");
        Assert.True(h.Pool.FailingOpen);
        Assert.Equal([h[0], h[1]], h.Pool.Available);
    }

    [Fact]
    public void History_IsBounded_AndEveryEventContinuesThePreviousOne()
    {
        using var h = HealthHarness.Start("");
        for (var i = 0; i < 120; i++)
        {
            h.Authority.SetOverride(h.Pool, h[0], i % 2 == 0 ? OverrideKind.Disable : OverrideKind.Drain, $"step {i}", "t");
        }
        var events = h[0].History.Snapshot();
        Assert.Equal(HealthHistory.Capacity, events.Count);
        for (var i = 1; i < events.Count; i++)
        {
            Assert.Equal(events[i - 1].To, events[i].From);
            Assert.True(events[i].Sequence > events[i - 1].Sequence);
        }
        Assert.Equal("step 119", events[^1].Reason.Split(": ")[1]);
    }

    [Fact]
    public void RuntimeRegistration_IsPendingAndProbedAtOnce_RemovalStopsItsLoop()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeProbe(time);
        using var h = HealthHarness.Start(Active, probe: probe, time: time);
        var config = new Fulcrum.Configuration.BackendConfig("10.0.0.9:80", new("10.0.0.9", 80), 1, "new");
        var added = h.Runtime.AddBackend("p", config);
        Assert.Equal(HealthStatus.Healthy, added.Health.Status); // probed at once, passed
        Assert.Equal(1, probe.Count("10.0.0.9:80"));
        Assert.Equal([HealthStatus.Pending, HealthStatus.Healthy], added.History.Snapshot().Select(e => e.To).Prepend(HealthStatus.Pending).Distinct());
        Assert.Same(added, h.Runtime.AddBackend("p", config));
        Assert.Equal(4, h.Runtime.Prober.LoopCount);
        Assert.True(h.Runtime.RemoveBackend("p", "new"));
        Assert.Equal(3, h.Runtime.Prober.LoopCount);
        Assert.DoesNotContain(added, h.Pool.Available);
        h.Advance(60);
        Assert.Equal(1, probe.Count("10.0.0.9:80"));
    }

    private static Fulcrum.Forwarding.ForwardResult ForwardResultWith(int status) => Fulcrum.Forwarding.ForwardResult.Success(status);
}
