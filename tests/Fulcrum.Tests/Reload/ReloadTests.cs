using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;
using Fulcrum.Health;
using Fulcrum.Tests.Integration;
using Fulcrum.Tests.TestSupport;
using Fulcrum.Tests.Tunnels;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Reload;

/// <summary>Hot reload against a real Fulcrum: state kept, traffic and tunnels untouched, bad files refused.</summary>
[Collection(nameof(SerialTests))]
public sealed class ReloadTests : ConfigFolder
{
    internal static string Config(string body, string listeners = "", string admin = "admin: { address: 127.0.0.1:0 }") => $"""
        listeners:
          - name: web
            address: 127.0.0.1:0
        {listeners}
        {body}
        {admin}
        """;

    private async Task<Fulcrum.Hosting.ReloadResult> ReloadAsync(TestProxy proxy, string yaml)
    {
        await System.IO.File.WriteAllTextAsync(File, yaml);
        return await proxy.Server.ReloadAsync("test");
    }

    /// <summary>One route "main" for everything, to one pool "main".</summary>
    internal static string MainRoute(string balancing, IEnumerable<string> backends, string extra = "") =>
        "routes: [{ name: main, pool: main }]\npools:\n" + Pool("main", balancing, backends, extra);

    private static string Pool(string name, string balancing, IEnumerable<string> backends, string extra = "") => $"""
          - name: {name}
            balancing: {balancing}
        {extra}
            backends:
        {string.Join("\n", backends.Select(b => "      - " + b))}
        """;

    [Fact]
    public async Task Storm_100_reloads_under_load_and_50_open_websockets_drop_nothing_and_keep_state()
    {
        var echo = new WebSocketEcho();
        var stable = new List<TestBackend>();
        for (var i = 0; i < 3; i++)
        {
            stable.Add(await TestBackend.StartAsync($"s{i}", echo.Handler($"s{i}")));
        }
        await using var x = await TestBackend.StartAsync("x", echo.Handler("x"));
        await using var y = await TestBackend.StartAsync("y", echo.Handler("y"));
        const string health = "    health: { active: { path: /health, interval: 1s } }";
        string Variant(bool a) => Config($"""
            routes:
              - name: {(a ? "api" : "other")}
                match: {"{"} path_prefix: {(a ? "/api/" : "/other/")} {"}"}
                pool: main
              - name: everything
                pool: main
            pools:
            {Pool("main", "least_requests", [.. stable.Select(b => $"{{ address: {b.Address}, name: {b.Name} }}"), a ? $"{{ address: {x.Address}, name: x }}" : $"{{ address: {y.Address}, name: y }}"], health)}
            """);
        var sockets = new List<ClientWebSocket>();
        try
        {
            await using var proxy = await StartAsync(Variant(true));
            var runtime = proxy.Server.Runtime;
            var kept = runtime.Pool("main").Backends.Take(3).ToArray();
            var pendingAgain = new System.Collections.Concurrent.ConcurrentQueue<string>();
            runtime.Health.Changed += e =>
            {
                if (e.To == HealthStatus.Pending && e.Backend is "s0" or "s1" or "s2")
                {
                    pendingAgain.Enqueue($"{e.Backend}: {e.From} -> {e.To} ({e.Reason})");
                }
            };
            for (var i = 0; i < 50; i++)
            {
                sockets.Add(await WebSocketClient.ConnectAsync(proxy.BaseUri));
            }

            using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = proxy.BaseUri };
            var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
            var served = 0;
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var loops = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        using var response = await client.GetAsync("/page");
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            Interlocked.Increment(ref served);
                        }
                        else
                        {
                            failures.Enqueue($"{(int)response.StatusCode} {string.Join(",", response.Headers.TryGetValues("Fulcrum-Error", out var v) ? v : [])}");
                        }
                    }
                    catch (HttpRequestException e)
                    {
                        failures.Enqueue(e.Message);
                    }
                }
            })).ToArray();

            var applied = new List<double>();
            for (var i = 1; i <= 100; i++)
            {
                var result = await ReloadAsync(proxy, Variant(i % 2 == 0));
                Assert.True(result.Success, string.Join("\n", result.Errors));
                applied.Add(result.ApplyMs);
                await Task.Delay(60);
            }
            await Task.WhenAll(loops);

            Assert.True(failures.IsEmpty, $"{failures.Count} failed requests: {string.Join(" | ", failures.Take(5))}");
            Assert.True(served > 200, $"only {served} served");
            Assert.True(pendingAgain.IsEmpty, string.Join("\n", pendingAgain));
            // The same state objects, still healthy.
            var now = runtime.Pool("main").Backends.Take(3).ToArray();
            Assert.Equal(kept, now);
            Assert.All(now, b => Assert.Equal(HealthStatus.Healthy, b.Health.Status));
            Assert.Equal(50, sockets.Count(s => s.State == WebSocketState.Open));
            foreach (var socket in sockets)
            {
                Assert.Equal("still here", await WebSocketClient.EchoAsync(socket, "still here"));
            }
            Assert.Empty(echo.Closes);
            Assert.Equal(50, echo.Open);
            Assert.True(applied.Max() < 1000, $"a reload took {applied.Max():0} ms to apply");
        }
        finally
        {
            foreach (var s in sockets)
            {
                s.Abort();
                s.Dispose();
            }
            foreach (var b in stable)
            {
                await b.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task An_invalid_file_is_refused_with_line_and_column_and_traffic_is_untouched()
    {
        await using var a = await TestBackend.StartAsync("a");
        var good = Config(MainRoute("round_robin", [a.Address]));
        await using var proxy = await StartAsync(good);
        using var admin = proxy.AdminClient();
        Assert.Equal("a", await proxy.Client.GetStringAsync("/"));

        var bad = good.Replace("balancing: round_robin", "balancing: round_robbin", StringComparison.Ordinal) + "\nunknown_section: 1\n";
        await System.IO.File.WriteAllTextAsync(File, bad);
        using var response = await admin.PostAsync("/api/v1/reload", null);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.False(body.GetProperty("success").GetBoolean());
        var errors = body.GetProperty("errors").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => System.Text.RegularExpressions.Regex.IsMatch(e, @"fulcrum\.yaml:\d+:\d+: .*round_robbin"));
        Assert.Contains(errors, e => System.Text.RegularExpressions.Regex.IsMatch(e, @"fulcrum\.yaml:\d+:1: .*unknown_section"));

        // Traffic as before, and the refusal is visible where operators look.
        Assert.Equal("a", await proxy.Client.GetStringAsync("/"));
        Assert.Equal("round_robin", proxy.Server.Runtime.Pool("main").Config.Balancing);
        var status = await admin.GetFromJsonAsync<JsonElement>("/api/v1/config/status");
        Assert.Equal(1, status.GetProperty("failures").GetInt64());
        Assert.False(status.GetProperty("last_reload").GetProperty("success").GetBoolean());
        Assert.Contains("fulcrum_config_reloads_total{result=\"failure\"} 1", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);

        // Fixed: applied, and the success is counted and timestamped.
        var before = proxy.Server.Status.AppliedAt;
        await Task.Delay(20);
        var fixedResult = await ReloadAsync(proxy, good.Replace("round_robin", "random", StringComparison.Ordinal));
        Assert.True(fixedResult.Success);
        Assert.Equal("random", proxy.Server.Runtime.Pool("main").Config.Balancing);
        Assert.True(proxy.Server.Status.AppliedAt > before);
        Assert.Contains("fulcrum_config_reloads_total{result=\"success\"} 1", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Backends_keep_their_state_and_api_changes_survive_unless_the_file_changes_that_backend()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        await using var c = await TestBackend.StartAsync("c");
        await using var api = await TestBackend.StartAsync("api");
        string Yaml(int weightA, int weightB, bool withC) => Config(MainRoute("round_robin", [$"{{ address: {a.Address}, name: a, weight: {weightA} }}", $"{{ address: {b.Address}, name: b, weight: {weightB} }}", .. withC ? new[] { $"{{ address: {c.Address}, name: c }}" } : []]));
        await using var proxy = await StartAsync(Yaml(1, 1, withC: true));
        using var admin = proxy.AdminClient();
        for (var i = 0; i < 6; i++)
        {
            (await proxy.Client.GetAsync("/")).Dispose();
        }
        var pool = proxy.Server.Runtime.Pool("main");
        var stateA = pool.Find("a")!;
        var stateB = pool.Find("b")!;
        var requestsA = stateA.Requests;
        Assert.True(requestsA > 0);
        (await admin.PostAsJsonAsync("/api/v1/pools/main/backends", new { address = api.Address, name = "api" })).Dispose();
        (await admin.PostAsJsonAsync("/api/v1/pools/main/backends/a/drain", new { reason = "kept" })).Dispose();
        (await admin.PostAsJsonAsync("/api/v1/pools/main/backends/b/disable", new { reason = "changed by the file" })).Dispose();

        // a: unchanged in the file; b: its weight changes; c: removed from the file.
        var result = await ReloadAsync(proxy, Yaml(1, 5, withC: false));
        Assert.True(result.Success, string.Join("\n", result.Errors));
        Assert.Equal(["main/" + c.Address], result.Changes!.BackendsRemoved);
        Assert.Equal(["main/" + b.Address], result.Changes.BackendsUpdated);

        pool = proxy.Server.Runtime.Pool("main");
        Assert.Same(stateA, pool.Find("a"));
        Assert.Same(stateB, pool.Find("b"));
        Assert.Equal(requestsA, stateA.Requests);
        Assert.Equal(5, stateB.Weight);
        Assert.Null(pool.Find("c"));
        Assert.NotNull(pool.Find("api")); // registered through the API: kept
        Assert.Equal(HealthStatus.Draining, stateA.Health.Status); // its override kept
        Assert.Equal("kept", stateA.Health.Override!.Reason);
        Assert.Null(stateB.Health.Override); // the file changed b: the file wins
        Assert.Equal(HealthStatus.Healthy, stateB.Health.Status);
        Assert.Equal(["b", "api"], pool.Available.Select(x => x.DisplayName));
    }

    [Fact]
    public async Task A_new_address_starts_pending_and_is_probed_at_once()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        string Yaml(TestBackend second) => Config(MainRoute("round_robin", [$"{{ address: {a.Address}, name: a }}", $"{{ address: {second.Address}, name: second }}"], "    health: { active: { path: /health, interval: 30s } }"));
        await using var c = await TestBackend.StartAsync("c");
        await using var proxy = await StartAsync(Yaml(b));
        var events = new System.Collections.Concurrent.ConcurrentQueue<Fulcrum.Health.HealthEvent>();
        proxy.Server.Runtime.Health.Changed += events.Enqueue;
        var result = await ReloadAsync(proxy, Yaml(c));
        Assert.True(result.Success);
        Assert.Equal(["main/" + c.Address], result.Changes!.BackendsAdded);
        Assert.Equal(["main/" + b.Address], result.Changes.BackendsRemoved);
        await WebSocketTests.Eventually(() => proxy.Server.Runtime.Pool("main").Find("second")?.Health.Status == HealthStatus.Healthy, 3000);
        Assert.Contains(events, e => e.Backend == "second" && e.From == HealthStatus.Pending && e.To == HealthStatus.Healthy);
        Assert.DoesNotContain(events, e => e.Backend == "a");
    }

    [Fact]
    public async Task Listeners_are_bound_and_unbound_alone_and_one_that_cannot_bind_refuses_the_whole_reload()
    {
        await using var a = await TestBackend.StartAsync("a");
        var pools = MainRoute("round_robin", [a.Address]);
        await using var proxy = await StartAsync(Config(pools));
        // A keep-alive connection on the kept listener: it must go on working through every reload.
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 }) { BaseAddress = proxy.BaseUri };
        Assert.Equal("a", await client.GetStringAsync("/"));

        var port = Ports.Unused();
        var extra = $"  - name: extra\n    address: 127.0.0.1:{port}";
        var added = await ReloadAsync(proxy, Config(pools, extra));
        Assert.True(added.Success, string.Join("\n", added.Errors));
        Assert.Equal(["extra"], added.Changes!.ListenersAdded);
        using (var other = new HttpClient())
        {
            Assert.Equal("a", await other.GetStringAsync($"http://127.0.0.1:{port}/"));
        }
        Assert.Equal("a", await client.GetStringAsync("/"));

        // A port someone else holds: nothing of this reload applies, not even its new pool.
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var taken = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var refused = await ReloadAsync(proxy, Config(pools.Replace("pools:", $"pools:\n  - name: newpool\n    backends: [{a.Address}]", StringComparison.Ordinal), extra + $"\n  - name: clash\n    address: 127.0.0.1:{taken}"));
        Assert.False(refused.Success);
        Assert.Contains($"listener 'clash' cannot listen on 127.0.0.1:{taken}", Assert.Single(refused.Errors), StringComparison.Ordinal);
        Assert.False(proxy.Server.Runtime.Current.Pools.ContainsKey("newpool"));
        Assert.Equal(["web", "extra"], proxy.Server.ListenerNames.Order().Reverse());

        var removed = await ReloadAsync(proxy, Config(pools));
        Assert.True(removed.Success);
        Assert.Equal(["extra"], removed.Changes!.ListenersRemoved);
        await WebSocketTests.Eventually(() =>
        {
            using var probe = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                probe.Connect(IPAddress.Loopback, port);
                return false;
            }
            catch (SocketException)
            {
                return true;
            }
        });
        Assert.Equal("a", await client.GetStringAsync("/"));
    }

    [Fact]
    public async Task Admin_api_additions_and_removals_racing_reloads_are_neither_lost_nor_resurrected()
    {
        await using var a = await TestBackend.StartAsync("a");
        string Yaml(int weight) => Config(MainRoute("round_robin", [$"{{ address: {a.Address}, name: a, weight: {weight} }}"]));
        await using var proxy = await StartAsync(Yaml(1));
        var runtime = proxy.Server.Runtime;
        var reloads = Task.Run(async () =>
        {
            for (var i = 0; i < 60; i++)
            {
                Assert.True((await ReloadAsync(proxy, Yaml(1 + (i % 3)))).Success);
            }
        });
        // Meanwhile: register 60 backends and remove every other one, as an orchestrator would.
        var api = Task.Run(() =>
        {
            for (var i = 0; i < 60; i++)
            {
                var address = $"127.0.0.1:{20_000 + i}";
                runtime.AddBackend("main", new Fulcrum.Configuration.BackendConfig(address, new Fulcrum.Configuration.HostPort("127.0.0.1", 20_000 + i), 1, null), persist: true);
                if (i % 2 == 1)
                {
                    Assert.True(runtime.RemoveBackend("main", address, persist: true));
                }
            }
        });
        await Task.WhenAll(reloads, api);
        await ReloadAsync(proxy, Yaml(1));
        var pool = runtime.Pool("main");
        var addresses = pool.Backends.Select(b => b.Address).ToHashSet();
        for (var i = 0; i < 60; i++)
        {
            Assert.Equal(i % 2 == 0, addresses.Contains($"127.0.0.1:{20_000 + i}"));
        }
        Assert.Contains(a.Address, addresses);
        Assert.Equal(31, pool.Backends.Count);
        Assert.DoesNotContain(pool.Backends, b => b.Health.Status == HealthStatus.Pending && b.Address == a.Address);
    }

    [Fact]
    public async Task Turning_active_checks_off_ends_a_lapsed_ejection_and_a_changed_check_path_is_probed()
    {
        var paths = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var a = await TestBackend.StartAsync("a", async ctx =>
        {
            paths.Enqueue(ctx.Request.Path.Value!);
            await ctx.Response.WriteAsync("a");
        });
        await using var b = await TestBackend.StartAsync("b");
        string Yaml(string? check) => Config(MainRoute("round_robin", [$"{{ address: {a.Address}, name: a }}", $"{{ address: {b.Address}, name: b }}"], check is null ? "    health: { passive: { ejection: 200ms } }" : $"    health: {{ active: {{ path: {check}, interval: 200ms }}, passive: {{ ejection: 200ms }} }}"));
        await using var proxy = await StartAsync(Yaml("/old-check"));
        var result = await ReloadAsync(proxy, Yaml("/new-check"));
        Assert.True(result.Success);
        await WebSocketTests.Eventually(() => paths.Contains("/new-check"), 3000);
        var seen = paths.Count;
        await Task.Delay(600);
        Assert.DoesNotContain("/old-check", paths.Skip(seen));

        // Eject a by hand (as passive checks would), then turn active checks off: with them the
        // ejection waited for a probe; without them it must end on time alone.
        var runtime = proxy.Server.Runtime;
        var pool = runtime.Pool("main");
        var stateA = pool.Find("a")!;
        for (var i = 0; i < 5; i++)
        {
            runtime.Health.ReportTraffic(pool, stateA, new Fulcrum.Forwarding.ForwardResult(Fulcrum.Forwarding.FulcrumError.ConnectRefused, "test", 0, false, false));
        }
        Assert.Equal(HealthStatus.Ejected, stateA.Health.Status);
        Assert.True((await ReloadAsync(proxy, Yaml(null))).Success);
        await WebSocketTests.Eventually(() => stateA.Health.Status == HealthStatus.Healthy, 3000);
    }

    [Fact]
    public async Task Sections_read_only_at_start_are_reported_not_applied()
    {
        await using var a = await TestBackend.StartAsync("a");
        var pools = MainRoute("round_robin", [a.Address]);
        await using var proxy = await StartAsync(Config(pools));
        var result = await ReloadAsync(proxy, Config(pools + "\nmetrics: { enabled: false }"));
        Assert.True(result.Success);
        Assert.Equal(["metrics"], result.Changes!.NeedRestart);
        Assert.False(result.Changes.Any);
        // Still not in force after a second reload of the same file.
        Assert.Equal(["metrics"], (await ReloadAsync(proxy, Config(pools + "\nmetrics: { enabled: false }"))).Changes!.NeedRestart);
    }
}
