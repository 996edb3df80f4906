using System.Net;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Cli;

/// <summary>The fulcrum command as a real process: check, run, demo, version, signals.</summary>
public class CliTests
{
    [Fact]
    public async Task Check_ValidFile_Exits0()
    {
        var path = FulcrumProcess.WriteConfig("""
            listeners: [{ name: web, address: 127.0.0.1:8080 }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9000, 127.0.0.1:9001] }]
            """);
        var (code, stdout, _) = await FulcrumProcess.RunAsync("check", "--config", path);
        Assert.Equal(0, code);
        Assert.Contains("configuration is valid (1 listener(s), 1 route(s), 1 pool(s), 2 backend(s))", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Check_InvalidFile_Exits1_ListingEveryErrorWithLineAndColumn()
    {
        var path = FulcrumProcess.WriteConfig("""
            listeners: [{ name: web, address: 127.0.0.1 }]
            routes: [{ name: r, pool: nope }]
            pools: [{ name: p, balancing: fastest, backends: [127.0.0.1:9000] }]
            """);
        var (code, _, stderr) = await FulcrumProcess.RunAsync("check", "-c", path);
        Assert.Equal(1, code);
        Assert.Contains($"{path}:1:35: listeners[0].address: '127.0.0.1' has no port", stderr, StringComparison.Ordinal);
        Assert.Contains($"{path}:2:27: route 'r' sends traffic to pool 'nope', which does not exist", stderr, StringComparison.Ordinal);
        Assert.Contains($"{path}:3:31: pools[0].balancing: unknown value 'fastest'", stderr, StringComparison.Ordinal);
        Assert.Contains("3 error(s)", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Check_NoConfigOption_ExitsNonZeroWithUsage()
    {
        var (code, _, stderr) = await FulcrumProcess.RunAsync("check");
        Assert.NotEqual(0, code);
        Assert.Contains("--config", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Version_PrintsIt()
    {
        var (code, stdout, _) = await FulcrumProcess.RunAsync("version");
        Assert.Equal(0, code);
        Assert.StartsWith("fulcrum 0.1.0", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_InvalidFile_DoesNotStart()
    {
        var path = FulcrumProcess.WriteConfig("listeners: []\nroutes: []\n");
        var (code, _, stderr) = await FulcrumProcess.RunAsync("run", "-c", path);
        Assert.Equal(1, code);
        Assert.Contains("not starting", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_ServesTraffic_AndSigtermStopsItCleanly()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        var port = Ports.Unused();
        var path = FulcrumProcess.WriteConfig($"""
            listeners: [{"{"} name: web, address: 127.0.0.1:{port} {"}"}]
            routes: [{"{"} name: r, pool: p {"}"}]
            pools: [{"{"} name: p, backends: [{backend.Address}] {"}"}]
            shutdown: {"{"} delay: 100ms {"}"}
            """);
        using var process = FulcrumProcess.Start("run", "-c", path);
        await process.WaitForStderrAsync($"listener 'web' on http://127.0.0.1:{port}");
        using var client = new HttpClient();
        Assert.Equal("b1", await client.GetStringAsync($"http://127.0.0.1:{port}/hello"));

        process.Signal(15); // SIGTERM
        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("SIGTERM received", process.Stderr, StringComparison.Ordinal);
        Assert.Contains("stopped", process.Stderr, StringComparison.Ordinal);
        // The access log went to stdout, one JSON line per request.
        Assert.Contains("\"path\":\"/hello\"", process.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_BySighupAndByTheCli_RefusesABadFileWithItsPositionAndAppliesAGoodOne()
    {
        await using var b1 = await TestBackend.StartAsync("b1");
        await using var b2 = await TestBackend.StartAsync("b2");
        var port = Ports.Unused();
        var adminPort = Ports.Unused();
        string Yaml(TestBackend backend, string balancing = "round_robin") => $"""
            listeners: [{"{"} name: web, address: 127.0.0.1:{port} {"}"}]
            routes: [{"{"} name: r, pool: p {"}"}]
            pools: [{"{"} name: p, balancing: {balancing}, backends: [{backend.Address}] {"}"}]
            admin: {"{"} address: 127.0.0.1:{adminPort} {"}"}
            shutdown: {"{"} delay: 0s {"}"}
            """;
        var path = FulcrumProcess.WriteConfig(Yaml(b1));
        using var process = FulcrumProcess.Start("run", "-c", path);
        await process.WaitForStderrAsync($"listener 'web' on http://127.0.0.1:{port}");
        using var client = new HttpClient();
        Assert.Equal("b1", await client.GetStringAsync($"http://127.0.0.1:{port}/"));
        var admin = $"http://127.0.0.1:{adminPort}";

        await File.WriteAllTextAsync(path, Yaml(b2, "round_robbin"));
        process.Signal(1); // SIGHUP
        await process.WaitForStderrAsync("configuration reload (SIGHUP) refused");
        Assert.Matches(@"\.yaml:3:\d+: .*round_robbin", process.Stderr);
        Assert.Equal("b1", await client.GetStringAsync($"http://127.0.0.1:{port}/"));
        var status = await FulcrumProcess.RunAsync("status", "--admin", admin);
        Assert.Equal(0, status.ExitCode);
        Assert.Contains("was REFUSED; the configuration above is still in force", status.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"\.yaml:3:\d+: .*round_robbin", status.Stdout);

        var refused = await FulcrumProcess.RunAsync("reload", "--admin", admin);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("reload refused with 1 error(s); the running configuration stays", refused.Stderr, StringComparison.Ordinal);

        await File.WriteAllTextAsync(path, Yaml(b2));
        var reloaded = await FulcrumProcess.RunAsync("reload", "--admin", admin);
        Assert.Equal(0, reloaded.ExitCode);
        Assert.Matches(@"reloaded in [\d.]+ ms", reloaded.Stdout);
        Assert.Equal("b2", await client.GetStringAsync($"http://127.0.0.1:{port}/"));

        process.Signal(15);
        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Run_PortInUse_ExitsWithAClearError()
    {
        using var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var path = FulcrumProcess.WriteConfig($"""
            listeners: [{"{"} name: web, address: 127.0.0.1:{port} {"}"}]
            routes: [{"{"} name: r, pool: p {"}"}]
            pools: [{"{"} name: p, backends: [127.0.0.1:9] {"}"}]
            """);
        var (code, _, stderr) = await FulcrumProcess.RunAsync("run", "-c", path);
        Assert.Equal(1, code);
        Assert.Contains("cannot start", stderr, StringComparison.Ordinal);
        Assert.Contains(port.ToString(System.Globalization.CultureInfo.InvariantCulture), stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_ServesThreeBackends_ExplainsAnError_AndCtrlCStopsIt()
    {
        // Port 0: the demo binds any free port and prints it. A port picked here and released
        // could be taken by another test's server before the demo binds it.
        using var process = FulcrumProcess.Start("demo", "--port", "0");
        await process.WaitForStderrAsync("Ctrl-C stops");
        var printed = System.Text.RegularExpressions.Regex.Match(process.Stderr, @"curl http://127\.0\.0\.1:(\d+)/ ");
        Assert.True(printed.Success, process.Stderr);
        var port = int.Parse(printed.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.NotEqual(0, port);
        var url = $"http://127.0.0.1:{port}";

        using var client = new HttpClient();
        var seen = new HashSet<string>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await client.GetAsync(url + "/");
            seen.Add(response.Headers.GetValues("X-Backend").Single());
        }
        Assert.Equal(["demo-1", "demo-2", "demo-3"], seen.Order());

        Assert.Equal("ready\n", await client.GetStringAsync(url + "/health/ready"));
        Assert.Contains("answered after 10 ms", await client.GetStringAsync(url + "/slow?ms=10"), StringComparison.Ordinal);

        using (var events = await client.GetAsync(url + "/events", HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await events.Content.ReadAsStreamAsync());
            Assert.Equal("id: 1", await reader.ReadLineAsync());
        }

        // The WebSocket echo at /ws, tunnelled, and the page that uses it.
        using (var socket = new System.Net.WebSockets.ClientWebSocket())
        {
            await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/ws"), CancellationToken.None);
            Assert.Equal("echo me", await Tunnels.WebSocketClient.EchoAsync(socket, "echo me"));
            await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }
        Assert.Contains("/ws\"", await client.GetStringAsync(url + "/websocket"), StringComparison.Ordinal);

        using (var broken = await client.GetAsync(url + "/broken/"))
        {
            Assert.Equal(HttpStatusCode.BadGateway, broken.StatusCode);
            Assert.Equal("connect_refused", broken.Headers.GetValues("Fulcrum-Error").Single());
        }

        process.Signal(2); // SIGINT, as Ctrl-C
        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Run_NonLoopbackAdminWithoutTokenFile_RefusesToStartAndSaysWhy()
    {
        var path = FulcrumProcess.WriteConfig("""
            listeners: [{ name: web, address: 127.0.0.1:8080 }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9000] }]
            admin: { address: 0.0.0.0:9901 }
            """);
        var (code, _, stderr) = await FulcrumProcess.RunAsync("run", "-c", path);
        Assert.Equal(1, code);
        Assert.Contains($"{path}:4:19: admin.address 0.0.0.0:9901 can be reached from other machines, and the admin API can take backends out of rotation: set admin.token_file, or bind it to 127.0.0.1", stderr, StringComparison.Ordinal);
        Assert.Contains("not starting", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigterm_WithSlowRequestsInFlight_FinishesThemAll_RefusesNewConnectionsAfterTheDelay_Exits0()
    {
        await using var slow = await TestBackend.StartAsync("slow", async c =>
        {
            await Task.Delay(2000);
            await Microsoft.AspNetCore.Http.HttpResponseWritingExtensions.WriteAsync(c.Response, "done");
        });
        await using var fast = await TestBackend.StartAsync("fast");
        var port = Ports.Unused();
        var admin = Ports.Unused();
        var path = FulcrumProcess.WriteConfig($$"""
            listeners: [{ name: web, address: 127.0.0.1:{{port}} }]
            routes:
              - { name: quick, pool: fast, match: { path: /quick } }
              - { name: all, pool: slow }
            pools:
              - { name: slow, backends: [{{slow.Address}}] }
              - { name: fast, backends: [{{fast.Address}}] }
            admin: { address: 127.0.0.1:{{admin}} }
            shutdown: { delay: 1500ms, drain_timeout: 20s }
            """);
        using var process = FulcrumProcess.Start("run", "-c", path);
        await process.WaitForStderrAsync($"listener 'web' on http://127.0.0.1:{port}");
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 250 }) { Timeout = TimeSpan.FromSeconds(60) };
        var requests = Enumerable.Range(0, 200).Select(i => client.GetAsync($"http://127.0.0.1:{port}/slow/{i}")).ToArray();
        var deadline = Environment.TickCount64 + 10_000;
        while (slow.Count < 200)
        {
            Assert.True(Environment.TickCount64 < deadline, $"only {slow.Count} of 200 requests reached the backend");
            await Task.Delay(20);
        }

        process.Signal(15); // SIGTERM
        await process.WaitForStderrAsync("/readyz now answers 503");
        using var adminClient = new HttpClient();
        using (var ready = await adminClient.GetAsync($"http://127.0.0.1:{admin}/readyz"))
        {
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }
        // During the delay a new connection is still accepted and served.
        using (var during = new HttpClient())
        {
            Assert.Equal("fast", await during.GetStringAsync($"http://127.0.0.1:{port}/quick"));
        }

        var responses = await Task.WhenAll(requests);
        Assert.All(responses, r => Assert.Equal(System.Net.HttpStatusCode.OK, r.StatusCode));
        foreach (var r in responses)
        {
            r.Dispose();
        }

        // After the delay, new connections are refused (the slow requests took 2 s, so it has passed).
        await Task.Delay(200);
        using var after = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(async () => await after.ConnectAsync(System.Net.IPAddress.Loopback, port));
        Assert.Equal(System.Net.Sockets.SocketError.ConnectionRefused, refused.SocketErrorCode);

        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task AdminShutdown_StopsTheProcessGracefully()
    {
        await using var backend = await TestBackend.StartAsync("b");
        var port = Ports.Unused();
        var admin = Ports.Unused();
        var path = FulcrumProcess.WriteConfig($$"""
            listeners: [{ name: web, address: 127.0.0.1:{{port}} }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            admin: { address: 127.0.0.1:{{admin}} }
            shutdown: { delay: 0s }
            """);
        using var process = FulcrumProcess.Start("run", "-c", path);
        await process.WaitForStderrAsync("admin on http://");
        var (code, stdout, _) = await FulcrumProcess.RunAsync("shutdown", "--admin", $"http://127.0.0.1:{admin}");
        Assert.Equal(0, code);
        Assert.Contains("shutting down", stdout, StringComparison.Ordinal);
        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("shutdown requested through the admin API by 127.0.0.1", process.Stderr, StringComparison.Ordinal);
    }
}
