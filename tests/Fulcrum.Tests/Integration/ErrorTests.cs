using System.Net;
using System.Text.Json;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Integration;

/// <summary>Every response Fulcrum makes itself says what happened and what to check.</summary>
public class ErrorTests
{
    [Fact]
    public async Task RefusedBackend_Gives502ConnectRefused_NamingTheBackend()
    {
        using var deadPort = Ports.Refusing();
        var dead = deadPort.Port;
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{dead}"]));
        using var response = await proxy.Client.GetAsync("/x");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("connect_refused", response.Headers.GetValues("Fulcrum-Error").Single());
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains($"127.0.0.1:{dead}: connect_refused: connection refused", body, StringComparison.Ordinal);
        Assert.Contains("pool 'main'", body, StringComparison.Ordinal);
        Assert.Contains("Check that the backend is running", body, StringComparison.Ordinal);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.ToString(), StringComparison.Ordinal);

        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/x");
        Assert.Equal("connect_refused", line.GetProperty("error").GetString());
        Assert.Equal(502, line.GetProperty("status").GetInt32());
    }

    [Fact]
    public async Task EveryBackendRefuses_TheBodyListsEachOne_AndEachWasTriedOnce()
    {
        var held = new[] { Ports.Refusing(), Ports.Refusing(), Ports.Refusing() };
        using var h0 = held[0];
        using var h1 = held[1];
        using var h2 = held[2];
        var ports = held.Select(p => p.Port).ToArray();
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [.. ports.Select(p => $"127.0.0.1:{p}")]));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/order") { Content = new StringContent("{}") };
        request.Headers.Accept.ParseAdd("application/json");
        using var response = await proxy.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = json.RootElement;
        Assert.Equal("connect_refused", root.GetProperty("error").GetString());
        Assert.Contains("any of the 3 backends", root.GetProperty("message").GetString(), StringComparison.Ordinal);
        var backends = root.GetProperty("backends").EnumerateArray().Select(b => b.GetProperty("backend").GetString()).Order().ToArray();
        Assert.Equal(ports.Select(p => $"127.0.0.1:{p}").Order().ToArray(), backends);
        Assert.All(root.GetProperty("backends").EnumerateArray(), b => Assert.Equal("connection refused", b.GetProperty("detail").GetString()));
        Assert.Equal(response.Headers.GetValues("X-Request-Id").Single(), root.GetProperty("request_id").GetString());
    }

    [Fact]
    public async Task OneBackendRefuses_RequestsGoToTheOthers_WithNoClientError()
    {
        await using var live = await TestBackend.StartAsync("live");
        using var deadPort = Ports.Refusing();
        var dead = deadPort.Port;
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{dead}", live.Address]));
        for (var i = 0; i < 20; i++)
        {
            using var response = await proxy.Client.PostAsync("/w", new StringContent("payload"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(20, live.Count);
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("attempts").GetArrayLength() == 2);
        var attempts = line.GetProperty("attempts");
        Assert.Equal("connect_refused", attempts[0].GetProperty("result").GetString());
        Assert.Equal("ok", attempts[1].GetProperty("result").GetString());
        Assert.Equal(live.Address, line.GetProperty("backend").GetString());
        Assert.Equal("", line.GetProperty("error").GetString());
    }

    [Fact]
    public async Task NoRoute_Gives404NoRoute()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync($$"""
            routes:
              - { name: api, pool: p, match: { host: api.example.com } }
            pools:
              - { name: p, backends: [{{backend.Address}}] }
            """);
        using var response = await proxy.Client.GetAsync("/anything");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("no_route", response.Headers.GetValues("Fulcrum-Error").Single());
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("No route matches host '127.0.0.1' and path '/anything'", body, StringComparison.Ordinal);
        Assert.Equal(0, backend.Count);
    }

    [Fact]
    public async Task ErrorResponseToHead_HasNoBody()
    {
        using var deadPort = Ports.Refusing();
        var dead = deadPort.Port;
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{dead}"]));
        var raw = await RawHttp.SendAsync(proxy.EndPoint, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        var parts = raw.Text.Split("HTTP/1.1 502 Bad Gateway");
        Assert.Equal(3, parts.Length);
        Assert.EndsWith("\r\n\r\n", parts[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task NonHttpBackend_GivesUpstreamProtocolError()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var serve = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            var stream = client.GetStream();
            _ = await stream.ReadAsync(new byte[4096]);
            await stream.WriteAsync("SSH-2.0-OpenSSH_9.2\r\n\r\n"u8.ToArray());
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{port}"]));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_protocol_error", response.Headers.GetValues("Fulcrum-Error").Single());
        await serve;
    }

    [Fact]
    public async Task BackendClosesWithoutAnswering_GivesUpstreamReset()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var serve = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            _ = await client.GetStream().ReadAsync(new byte[4096]);
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{port}"]));
        using var response = await proxy.Client.PostAsync("/", new StringContent("x"));
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_reset", response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Contains("closed the connection before sending a response", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        await serve;
    }
}
