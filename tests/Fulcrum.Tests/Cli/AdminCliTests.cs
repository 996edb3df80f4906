using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Cli;

/// <summary>Every admin command as an operator runs it: the fulcrum binary against a running Fulcrum.</summary>
public class AdminCliTests
{
    private const string AdminSection = "admin: { address: 127.0.0.1:0 }";

    private static string Pool(string health, params string[] backends) => $"""
        routes: [{"{"} name: main, pool: main {"}"}]
        pools:
          - name: main
            balancing: round_robin
        {health}
            backends: [{string.Join(", ", backends)}]
        """;

    private static Task<(int ExitCode, string Stdout, string Stderr)> Cli(TestProxy proxy, params string[] args) =>
        FulcrumProcess.RunAsync([.. args, "--admin", $"http://{proxy.Server.AdminEndPoint}"]);

    [Fact]
    public async Task StatusBackendsAndOverrides()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        await using var proxy = await TestProxy.StartAsync(Pool("", $"{{ address: {a.Address}, name: api-1 }}", $"{{ address: {b.Address}, name: api-2 }}"), admin: AdminSection);

        var status = await Cli(proxy, "status");
        Assert.Equal(0, status.ExitCode);
        Assert.Contains("POOL  BACKEND  ADDRESS", status.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"main\s+api-1\s+127\.0\.0\.1:\d+\s+healthy", status.Stdout);
        Assert.Contains("pool main: 2 of 2 backends take traffic", status.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("\u001b[", status.Stdout, StringComparison.Ordinal); // no colour into a pipe

        var disable = await Cli(proxy, "disable", "main", "api-2", "--reason", "kernel patch", "--ttl", "1h");
        Assert.Equal(0, disable.ExitCode);
        Assert.Equal("api-2: disabled (disabled by 127.0.0.1: kernel patch)", disable.Stdout.Trim());

        var json = await Cli(proxy, "backends", "main", "--json");
        Assert.Contains("\"status\": \"disabled\"", json.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("\\u002B", json.Stdout, StringComparison.Ordinal);

        Assert.Equal(0, (await Cli(proxy, "drain", "main", "api-1", "--reason", "deploy")).ExitCode);
        Assert.Equal(0, (await Cli(proxy, "force-healthy", "main", "api-1", "--reason", "check is wrong")).ExitCode);
        var enable = await Cli(proxy, "enable", "main", "api-2");
        // api-2 has answered no request and its pool runs no active check: healthy, but unproven.
        Assert.Equal("api-2: healthy (unchecked, healthy by default: no active health check configured; watched by passive checks; no request answered yet)", enable.Stdout.Trim());

        var events = await Cli(proxy, "events", "--backend", "api-2");
        Assert.Contains("healthy -> disabled  (admin: disabled by 127.0.0.1: kernel patch)", events.Stdout, StringComparison.Ordinal);
        Assert.Contains("disable by 127.0.0.1: kernel patch (for 1h)", events.Stdout, StringComparison.Ordinal);

        var missing = await Cli(proxy, "disable", "main", "nope");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("pool 'main' has no backend named or at 'nope'", missing.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ProbeExplainAndConfig()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var proxy = await TestProxy.StartAsync(Pool("    health: { active: { path: /ready, interval: 30s } }", $"{{ address: {a.Address}, name: api-1 }}"), admin: AdminSection);

        var probe = await Cli(proxy, "probe", "main", "api-1");
        Assert.Equal(0, probe.ExitCode);
        Assert.StartsWith("passed: GET /ready answered 200", probe.Stdout, StringComparison.Ordinal);

        var explain = await Cli(proxy, "explain", "http://shop.example.com/cart");
        Assert.Equal(0, explain.ExitCode);
        Assert.Contains("forwarded to pool 'main'", explain.Stdout, StringComparison.Ordinal);
        Assert.Contains("=> route main: the route matches any host, any path", explain.Stdout, StringComparison.Ordinal);
        Assert.Contains("round_robin would pick api-1 now", explain.Stdout, StringComparison.Ordinal);

        var config = await Cli(proxy, "config");
        Assert.Contains("\"path\": \"/ready\"", config.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"interval\": \"30s\"", config.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unreachable_OrRefusedToken_IsOneClearLine()
    {
        using var closed = Ports.Refusing();
        var unreachable = await FulcrumProcess.RunAsync("status", "--admin", $"http://{closed.Address}");
        Assert.Equal(1, unreachable.ExitCode);
        Assert.Equal($"fulcrum: cannot reach the admin API at http://{closed.Address}: connection refused (is Fulcrum running with an admin section? set --admin or FULCRUM_ADMIN)", unreachable.Stderr.Trim());

        await using var a = await TestBackend.StartAsync("a");
        var tokens = Path.Combine(Path.GetTempPath(), $"fulcrum-cli-tokens-{Guid.NewGuid():N}");
        var wrong = Path.Combine(Path.GetTempPath(), $"fulcrum-cli-wrong-{Guid.NewGuid():N}");
        await File.WriteAllTextAsync(tokens, "ops:0123456789abcdef0123456789abcdef\n");
        await File.WriteAllTextAsync(wrong, "not-the-token-0123456789abcdef\n");
        try
        {
            await using var proxy = await TestProxy.StartAsync(Pool("", a.Address), admin: $"admin: {{ address: 127.0.0.1:0, token_file: {tokens} }}");
            var none = await Cli(proxy, "status");
            Assert.Equal(1, none.ExitCode);
            Assert.Contains("refused the token (401): pass --token-file or set FULCRUM_TOKEN", none.Stderr, StringComparison.Ordinal);
            Assert.Equal(1, (await Cli(proxy, "status", "--token-file", wrong)).ExitCode);
            var right = await Cli(proxy, "status", "--token-file", tokens);
            Assert.Equal(0, right.ExitCode);

            // The same through the environment: FULCRUM_ADMIN and FULCRUM_TOKEN.
            var env = new Dictionary<string, string>
            {
                ["FULCRUM_ADMIN"] = $"http://{proxy.Server.AdminEndPoint}",
                ["FULCRUM_TOKEN"] = "0123456789abcdef0123456789abcdef",
            };
            var viaEnv = await FulcrumProcess.RunAsync(env, "backends", "main", "--json");
            Assert.True(viaEnv.ExitCode == 0, viaEnv.Stderr);
            Assert.Contains("\"status\": \"healthy\"", viaEnv.Stdout, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(tokens);
            File.Delete(wrong);
        }
    }

    [Fact]
    public async Task DeployScenario_AddWaitDrain_WithAClientLoopThatSeesNoFailure()
    {
        await using var old = await TestBackend.StartAsync("old");
        await using var fresh = await TestBackend.StartAsync("new");
        await using var proxy = await TestProxy.StartAsync(Pool("    health: { active: { path: /health/ready, interval: 30s } }", $"{{ address: {old.Address}, name: old }}"), admin: AdminSection);

        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var served = 0;
        using var stop = new CancellationTokenSource();
        var loop = Task.Run(async () =>
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
                        failures.Enqueue($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                }
                catch (HttpRequestException e)
                {
                    failures.Enqueue(e.Message);
                }
            }
        });

        var add = await Cli(proxy, "add-backend", "main", fresh.Address, "--weight", "1", "--name", "new");
        Assert.True(add.ExitCode == 0, add.Stderr + add.Stdout);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var wait = await Cli(proxy, "wait-healthy", "main", "new", "--timeout", "10s");
        Assert.Equal(0, wait.ExitCode);
        // The CLI process itself takes a few hundred ms to start; the backend was probed at once.
        Assert.True(watch.ElapsedMilliseconds < 5000, $"{watch.ElapsedMilliseconds} ms");
        await Task.Delay(300);
        Assert.True(fresh.Seen.Count(s => s.PathAndQuery == "/") > 0, "the new backend gets traffic");

        Assert.Equal(0, (await Cli(proxy, "drain", "main", "old", "--reason", "deploy")).ExitCode);
        var before = old.Seen.Count(s => s.PathAndQuery == "/");
        await Task.Delay(500);
        Assert.Equal(before, old.Seen.Count(s => s.PathAndQuery == "/"));
        var remove = await Cli(proxy, "remove-backend", "main", "old");
        Assert.Equal(0, remove.ExitCode);
        Assert.Equal("old: drained and removed", remove.Stdout.Trim());
        await Task.Delay(300);

        await stop.CancelAsync();
        await loop;
        Assert.True(failures.IsEmpty, string.Join("\n", failures));
        Assert.True(served > 50, $"only {served} requests");
    }

    [Fact]
    public async Task WaitHealthy_TimesOut_Exit1WithTheLastReason()
    {
        await using var a = await TestBackend.StartAsync("a");
        using var refusing = Ports.Refusing();
        await using var proxy = await TestProxy.StartAsync(Pool("    health: { active: { path: /h, interval: 30s, fast_interval: 100ms } }", a.Address, refusing.Address), admin: AdminSection);
        var wait = await Cli(proxy, "wait-healthy", "main", refusing.Address, "--timeout", "500ms");
        Assert.Equal(1, wait.ExitCode);
        Assert.Contains("not healthy after 500ms", wait.Stderr, StringComparison.Ordinal);
        Assert.Contains("connection refused", wait.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EventsFollow_PrintsChangesAsTheyHappen()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var proxy = await TestProxy.StartAsync(Pool("", $"{{ address: {a.Address}, name: api-1 }}"), admin: AdminSection);
        using var follow = FulcrumProcess.Start("events", "--follow", "--admin", $"http://{proxy.Server.AdminEndPoint}");
        await Task.Delay(1500); // the process starts and subscribes
        Assert.Equal(0, (await Cli(proxy, "disable", "main", "api-1", "--reason", "followed")).ExitCode);
        var deadline = Environment.TickCount64 + 10_000;
        while (!follow.Stdout.Contains("disable by 127.0.0.1: followed", StringComparison.Ordinal))
        {
            Assert.True(Environment.TickCount64 < deadline, "events --follow printed nothing; stdout:\n" + follow.Stdout + "\nstderr:\n" + follow.Stderr);
            await Task.Delay(50);
        }
        Assert.Contains("healthy -> disabled", follow.Stdout, StringComparison.Ordinal);
    }
}
