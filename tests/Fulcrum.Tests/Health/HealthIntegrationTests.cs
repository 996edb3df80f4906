using System.Diagnostics;
using System.Net;
using Fulcrum.Configuration;
using Fulcrum.Health;
using Fulcrum.Hosting;
using Fulcrum.Observability;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Tests.Health;

/// <summary>Health with real probes against real backends on loopback.</summary>
public class HealthIntegrationTests
{
    private static string Pool(string active, params string[] backends) => $"""
        routes: [{"{"} name: main, pool: main {"}"}]
        pools:
          - name: main
            balancing: round_robin
            health:
              active: {active}
            backends: [{string.Join(", ", backends)}]
        """;

    private static async Task WaitForAsync(Func<bool> condition, int timeoutMs = 5000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException("the condition never held");
            }
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task Reasons_NameWhatFailed_404_Refused_Timeout()
    {
        await using var notFound = await TestBackend.StartAsync("nf", c =>
        {
            c.Response.StatusCode = c.Request.Path == "/health/ready" ? 404 : 200;
            return Task.CompletedTask;
        });
        await using var slow = await TestBackend.StartAsync("slow", async c => await Task.Delay(5000, c.RequestAborted));
        using var refusedPort = Ports.Refusing();
        var refused = refusedPort.Port;
        await using var proxy = await TestProxy.StartAsync(Pool("{ path: /health/ready, interval: 30s, fast_interval: 100ms, timeout: 200ms, unhealthy_after: 1 }",
            notFound.Address, slow.Address, $"127.0.0.1:{refused}"));
        var pool = proxy.Server.Runtime.Pool("main");
        await WaitForAsync(() => pool.Backends.All(b => b.Health.Status == HealthStatus.Unhealthy));
        Assert.Equal("health check got 404 from GET /health/ready, expected 200-399", pool.Backends[0].Health.Reason);
        Assert.Equal("health check timed out after 200ms (GET /health/ready)", pool.Backends[1].Health.Reason);
        Assert.Equal("connection refused", pool.Backends[2].Health.Reason);

        // With nothing healthy the 503 lists every backend with its status, reason and since.
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("no_healthy_backend", response.Headers.GetValues("Fulcrum-Error").Single());
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains($"{notFound.Address}: unhealthy: health check got 404 from GET /health/ready, expected 200-399 (since ", body, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{refused}: unhealthy: connection refused", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExpectBody_AndTcpProbes()
    {
        await using var backend = await TestBackend.StartAsync("b", async c => await c.Response.WriteAsync("status: degraded"));
        await using var proxy = await TestProxy.StartAsync(Pool("{ path: /, expect_body: 'status: ok', interval: 30s, fast_interval: 100ms, unhealthy_after: 1 }", backend.Address));
        var b = proxy.Server.Runtime.Pool("main").Backends[0];
        await WaitForAsync(() => b.Health.Status == HealthStatus.Unhealthy);
        Assert.Equal("health check body from GET / does not contain 'status: ok'", b.Health.Reason);

        await using var tcp = await TestProxy.StartAsync(Pool("{ type: tcp, interval: 30s }", backend.Address));
        var t = tcp.Server.Runtime.Pool("main").Backends[0];
        await WaitForAsync(() => t.Health.Status == HealthStatus.Healthy);
        Assert.StartsWith("health check passed: TCP connect to port", t.Health.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NewBackend_With30sInterval_TakesTrafficWithinASecondOfAnswering()
    {
        await using var first = await TestBackend.StartAsync("first");
        await using var proxy = await TestProxy.StartAsync(Pool("{ path: /health/ready, interval: 30s }", first.Address));
        var runtime = proxy.Server.Runtime;
        await WaitForAsync(() => runtime.Pool("main").Available.Length == 1);

        await using var second = await TestBackend.StartAsync("second");
        var watch = Stopwatch.StartNew();
        var added = runtime.AddBackend("main", new BackendConfig(second.Address, new HostPort("127.0.0.1", second.Port), 1, "second"));
        await WaitForAsync(() => added.Health.Status == HealthStatus.Healthy, 1000);
        Assert.True(watch.ElapsedMilliseconds < 1000, $"healthy after {watch.ElapsedMilliseconds} ms");
        for (var i = 0; i < 10; i++)
        {
            (await proxy.Client.GetAsync("/")).Dispose();
        }
        Assert.Equal(5, second.Seen.Count(s => s.PathAndQuery == "/"));
    }

    [Fact]
    public async Task RapidReRegistration_EndsAsOneHealthyBackendWithOneProbeLoop()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using var other = await TestBackend.StartAsync("other");
        await using var proxy = await TestProxy.StartAsync(Pool("{ path: /health, interval: 30s }", other.Address));
        var runtime = proxy.Server.Runtime;
        var config = new BackendConfig(backend.Address, new HostPort("127.0.0.1", backend.Port), 1, null);
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < 20; i++)
        {
            runtime.AddBackend("main", config);
            Assert.True(runtime.RemoveBackend("main", backend.Address));
        }
        var final = runtime.AddBackend("main", config);
        Assert.True(watch.ElapsedMilliseconds < 2000);

        await WaitForAsync(() => final.Health.Status == HealthStatus.Healthy);
        var pool = runtime.Pool("main");
        Assert.Single(pool.Backends, b => b.Address == backend.Address);
        Assert.Equal(2, runtime.Prober.LoopCount);
        // One loop at a 30 s interval: after it settles, no more probes arrive.
        var probes = backend.Seen.Count(s => s.PathAndQuery == "/health");
        await Task.Delay(1500);
        Assert.Equal(probes, backend.Seen.Count(s => s.PathAndQuery == "/health"));
    }

    [Fact]
    public async Task DisabledBackend_StaysDisabledWithItsReason_AcrossARestart()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        var dir = Directory.CreateTempSubdirectory("fulcrum-state-");
        try
        {
            var path = Path.Combine(dir.FullName, "fulcrum.yaml");
            await File.WriteAllTextAsync(path, $"""
                listeners: [{"{"} name: web, address: 127.0.0.1:0 {"}"}]
                routes: [{"{"} name: main, pool: main {"}"}]
                pools: [{"{"} name: main, backends: [{a.Address}, {b.Address}] {"}"}]
                """);
            var config = ConfigLoader.LoadFile(path).Config!;
            var options = new FulcrumServerOptions { AccessLog = AccessLog.Disabled, LogLevel = LogLevel.Warning };
            await using (var server = await FulcrumServer.StartAsync(config, options))
            {
                var pool = server.Runtime.Pool("main");
                server.Runtime.Health.SetOverride(pool, pool.Backends[1], OverrideKind.Disable, "bad disk, replacing it", "ops@example.com");
            }
            Assert.True(File.Exists(Path.Combine(dir.FullName, "fulcrum.state.json")));

            await using var restarted = await FulcrumServer.StartAsync(ConfigLoader.LoadFile(path).Config!, options);
            var again = restarted.Runtime.Pool("main").Backends[1];
            Assert.Equal(HealthStatus.Disabled, again.Health.Status);
            Assert.Equal("disabled by ops@example.com: bad disk, replacing it", again.Health.Reason);
            Assert.DoesNotContain(again, restarted.Runtime.Pool("main").Available);

            restarted.Runtime.Health.ClearOverride(restarted.Runtime.Pool("main"), again);
            Assert.Equal(HealthStatus.Healthy, again.Health.Status);
            Assert.DoesNotContain("bad disk", await File.ReadAllTextAsync(Path.Combine(dir.FullName, "fulcrum.state.json")), StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task KillingOneOfThreeBackendsUnderLoad_EjectsIt_AndClientsSeeAtMostThatManyFailures()
    {
        var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        await using var c = await TestBackend.StartAsync("c");
        await using var proxy = await TestProxy.StartAsync($$"""
            routes: [{ name: main, pool: main }]
            pools:
              - name: main
                balancing: round_robin
                health: { passive: { consecutive_failures: 3, ejection: 30s } }
                backends: [{{a.Address}}, {{b.Address}}, {{c.Address}}]
            """);
        var failures = 0;
        var served = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(4));
        var load = Enumerable.Range(0, 4).Select(async _ =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await proxy.Client.GetAsync("/", stop.Token);
                    if (response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref served);
                    }
                    else
                    {
                        Interlocked.Increment(ref failures);
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                }
                catch (HttpRequestException)
                {
                    Interlocked.Increment(ref failures);
                }
            }
        }).ToArray();
        await Task.Delay(1000);
        await a.DisposeAsync(); // its port now refuses connections
        await Task.WhenAll(load);

        var dead = proxy.Server.Runtime.Pool("main").Backends[0];
        Assert.Equal(HealthStatus.Ejected, dead.Health.Status);
        Assert.StartsWith("ejected for 30s after 3 consecutive failures in traffic", dead.Health.Reason, StringComparison.Ordinal);
        Assert.True(failures <= 3, $"{failures} client-visible failures");
        Assert.True(served > 100, $"only {served} requests served");
        var history = dead.History.Snapshot();
        Assert.Equal(HealthStatus.Ejected, history[^1].To);
        Assert.Equal(HealthSource.Passive, history[^1].Source);
    }

    [Fact]
    public async Task ProbeSettings_PortHostAndMethod_AreWhatTheBackendSees()
    {
        await using var traffic = await TestBackend.StartAsync("traffic");
        await using var management = await TestBackend.StartAsync("management");
        await using var proxy = await TestProxy.StartAsync(Pool(
            $"{{ path: /ready, method: HEAD, host: app.internal, port: {management.Port}, expect_status: [204, '200-299'], interval: 30s }}",
            traffic.Address));
        var backend = proxy.Server.Runtime.Pool("main").Backends[0];
        await WaitForAsync(() => backend.Health.Status == HealthStatus.Healthy);
        var probe = Assert.Single(management.Seen);
        Assert.Equal("HEAD", probe.Method);
        Assert.Equal("/ready", probe.PathAndQuery);
        Assert.Equal("app.internal", probe.Headers["Host"]);
        Assert.Equal("fulcrum-health-check", probe.Headers["User-Agent"]);
        Assert.Equal(0, traffic.Count);
    }

    [Fact]
    public async Task AtStartUp_TheFirstRequestIsServed_NotRefusedWhileEveryBackendIsPending()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using var proxy = await TestProxy.StartAsync(Pool("{ path: /health, interval: 30s }", backend.Address));
        // Listeners open only after the first probe round, so nothing is pending by now.
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}
