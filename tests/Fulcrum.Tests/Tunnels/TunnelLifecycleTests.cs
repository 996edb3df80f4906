using System.Net.Http.Json;
using System.Net.WebSockets;
using Fulcrum.Tests.Integration;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Tunnels;

/// <summary>Long-lived WebSockets: spread fairly, kept through a drain, closed cleanly at drain_timeout and at shutdown.</summary>
[Collection(nameof(SerialTests))]
public sealed class TunnelLifecycleTests
{
    private const string Admin = "admin: { address: 127.0.0.1:0 }";

    private static async Task<List<ClientWebSocket>> OpenAsync(Uri proxy, int count)
    {
        var sockets = new List<ClientWebSocket>(count);
        for (var i = 0; i < count; i++)
        {
            sockets.Add(await WebSocketClient.ConnectAsync(proxy));
        }
        return sockets;
    }

    [Fact]
    public async Task Least_requests_spreads_300_sockets_evenly_including_onto_a_backend_added_later()
    {
        var echoes = Enumerable.Range(1, 4).Select(_ => new WebSocketEcho()).ToArray();
        var backends = new List<TestBackend>();
        for (var i = 0; i < 4; i++)
        {
            backends.Add(await TestBackend.StartAsync($"b{i + 1}", echoes[i].Handler($"b{i + 1}")));
        }
        var sockets = new List<ClientWebSocket>();
        try
        {
            await using var proxy = await TestProxy.StartAsync(
                TestProxy.SinglePool("least_requests", backends.Take(3).Select(b => $"{{ address: {b.Address}, name: {b.Name} }}").ToArray()), admin: Admin);
            using var admin = proxy.AdminClient();

            sockets.AddRange(await OpenAsync(proxy.BaseUri, 100));
            Assert.All(echoes.Take(3), e => Assert.InRange(e.Open, 30, 37));

            using (var added = await admin.PostAsJsonAsync("/api/v1/pools/main/backends", new { address = backends[3].Address, name = "b4" }))
            {
                Assert.True(added.IsSuccessStatusCode, await added.Content.ReadAsStringAsync());
            }
            sockets.AddRange(await OpenAsync(proxy.BaseUri, 100));
            sockets.AddRange(await OpenAsync(proxy.BaseUri, 100));

            var open = echoes.Select(e => e.Open).ToArray();
            Assert.All(open, n => Assert.InRange(n, 68, 82)); // 75 ± 10%
            Assert.Equal(300, open.Sum());
            // The counts the balancer used are the ones the admin API and the metrics show.
            var view = await admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/pools/main");
            var tunnels = view.GetProperty("backends").EnumerateArray().Select(b => b.GetProperty("tunnels").GetInt32()).ToArray();
            Assert.Equal(open.Order(), tunnels.Order());
            var scrape = proxy.Server.ScrapeMetrics();
            Assert.Contains($"fulcrum_backend_tunnels{{pool=\"main\",backend=\"b4\"}} {open[3]}", scrape, StringComparison.Ordinal);

            // Every socket still works.
            foreach (var socket in sockets.Take(10).Concat(sockets.TakeLast(10)))
            {
                Assert.Equal("ping", await WebSocketClient.EchoAsync(socket, "ping"));
            }
        }
        finally
        {
            foreach (var s in sockets)
            {
                s.Abort();
                s.Dispose();
            }
            foreach (var b in backends)
            {
                await b.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Sockets_on_a_drained_backend_keep_working_while_new_ones_go_elsewhere_until_drain_timeout_closes_them()
    {
        var first = new WebSocketEcho();
        var second = new WebSocketEcho();
        await using var a = await TestBackend.StartAsync("a", first.Handler("a"));
        await using var b = await TestBackend.StartAsync("b", second.Handler("b"));
        var sockets = new List<ClientWebSocket>();
        try
        {
            // "first" sends everything to a while it is up: all 100 sockets start there.
            await using var proxy = await TestProxy.StartAsync(
                TestProxy.SinglePool("first", [$"{{ address: {a.Address}, name: a }}", $"{{ address: {b.Address}, name: b }}"], poolExtra: "    drain_timeout: 3s"), admin: Admin);
            using var admin = proxy.AdminClient();
            sockets.AddRange(await OpenAsync(proxy.BaseUri, 100));
            Assert.Equal(100, first.Open);

            (await admin.PostAsJsonAsync("/api/v1/pools/main/backends/a/drain", new { reason = "deploy" })).Dispose();
            var drainedAt = Environment.TickCount64;
            var fresh = await OpenAsync(proxy.BaseUri, 20);
            sockets.AddRange(fresh);
            Assert.Equal(20, second.Open);
            Assert.Equal(100, first.Open);
            foreach (var socket in sockets.Take(100))
            {
                Assert.Equal("a", await WebSocketClient.EchoAsync(socket, "who"));
            }
            Assert.True(Environment.TickCount64 - drainedAt < 2500, "the check took too long to prove anything before drain_timeout");

            // drain_timeout: the 100 on a are closed with 1001 both ways; b's are untouched.
            foreach (var socket in sockets.Take(100))
            {
                var (type, _) = await WebSocketClient.ReceiveAsync(socket, 10_000);
                Assert.Equal(WebSocketMessageType.Close, type);
                Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, socket.CloseStatus);
            }
            Assert.InRange(Environment.TickCount64 - drainedAt, 2900, 6000);
            await WebSocketTests.Eventually(() => first.Open == 0);
            Assert.All(first.Closes, c => Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, c));
            foreach (var socket in fresh)
            {
                Assert.Equal("b", await WebSocketClient.EchoAsync(socket, "who"));
            }
        }
        finally
        {
            foreach (var s in sockets)
            {
                s.Abort();
                s.Dispose();
            }
        }
    }

    [Fact]
    public async Task Sockets_on_a_removed_backend_stay_until_drain_timeout_counted_from_the_removal()
    {
        var echo = new WebSocketEcho();
        await using var a = await TestBackend.StartAsync("a", echo.Handler("a"));
        await using var b = await TestBackend.StartAsync("b");
        await using var proxy = await TestProxy.StartAsync(
            TestProxy.SinglePool("first", [$"{{ address: {a.Address}, name: a }}", $"{{ address: {b.Address}, name: b }}"], poolExtra: "    drain_timeout: 2s"), admin: Admin);
        using var admin = proxy.AdminClient();
        // The backend has been healthy a while before it is removed: the clock starts at removal.
        await Task.Delay(2500);
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri);
        using (var removed = await admin.DeleteAsync("/api/v1/pools/main/backends/a?timeout=100ms"))
        {
            Assert.True(removed.IsSuccessStatusCode);
        }
        var removedAt = Environment.TickCount64;
        Assert.Equal("a", await WebSocketClient.EchoAsync(socket, "who"));
        await Task.Delay(800);
        Assert.Equal("a", await WebSocketClient.EchoAsync(socket, "who"));
        var (type, _) = await WebSocketClient.ReceiveAsync(socket, 10_000);
        Assert.Equal(WebSocketMessageType.Close, type);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, socket.CloseStatus);
        Assert.InRange(Environment.TickCount64 - removedAt, 1800, 4500);
    }

    [Fact]
    public async Task Shutdown_lets_sockets_run_until_its_drain_timeout_then_closes_them_with_going_away()
    {
        var echo = new WebSocketEcho();
        await using var backend = await TestBackend.StartAsync("a", echo.Handler("a"));
        var sockets = new List<ClientWebSocket>();
        try
        {
            var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
            sockets.AddRange(await OpenAsync(proxy.BaseUri, 20));
            var started = Environment.TickCount64;
            var shutdown = proxy.Server.ShutdownAsync(TimeSpan.Zero, TimeSpan.FromSeconds(2));
            await Task.Delay(500);
            Assert.Equal("still open", await WebSocketClient.EchoAsync(sockets[0], "still open"));
            foreach (var socket in sockets)
            {
                var (type, _) = await WebSocketClient.ReceiveAsync(socket, 10_000);
                Assert.Equal(WebSocketMessageType.Close, type);
                Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, socket.CloseStatus);
            }
            await shutdown.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.InRange(Environment.TickCount64 - started, 1900, 6000);
            await WebSocketTests.Eventually(() => echo.Open == 0);
            Assert.All(echo.Closes, c => Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, c));
            await proxy.DisposeAsync();
        }
        finally
        {
            foreach (var s in sockets)
            {
                s.Abort();
                s.Dispose();
            }
        }
    }
}
