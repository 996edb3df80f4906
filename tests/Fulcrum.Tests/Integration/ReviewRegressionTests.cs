using System.Net;
using System.Net.Sockets;
using System.Text;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Integration;

/// <summary>Defects a review found in the request path, each pinned by a test.</summary>
public class ReviewRegressionTests
{
    [Fact]
    public async Task HostWithSubDelimiters_IsForwarded_NotA500()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        // Kestrel refuses most odd host characters itself; an underscore it lets through.
        var raw = await RawHttp.SendAsync(proxy.EndPoint, "GET / HTTP/1.1\r\nHost: a_b\r\nConnection: close\r\n\r\n");
        Assert.Equal(200, raw.Status);
        Assert.Equal("a_b", backend.Last.Headers["Host"]);
    }

    [Theory]
    [InlineData("has a space")]
    [InlineData("")]
    public async Task UnusableClientRequestId_IsReplacedUpstream_SoOneIdIsUsedEverywhere(string given)
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/");
        request.Headers.TryAddWithoutValidation("X-Request-Id", given);
        using var response = await proxy.Client.SendAsync(request);
        var id = response.Headers.GetValues("X-Request-Id").Single();
        Assert.Matches("^[0-9a-f]{16}$", id);
        Assert.Equal(id, backend.Last.Headers["X-Request-Id"]);
    }

    [Fact]
    public async Task BackendsOwnRequestId_DoesNotReplaceFulcrums()
    {
        await using var backend = await TestBackend.StartAsync("b", c =>
        {
            c.Response.Headers["X-Request-Id"] = "backend-made";
            return Task.CompletedTask;
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(backend.Last.Headers["X-Request-Id"], response.Headers.GetValues("X-Request-Id").Single());
    }

    [Fact]
    public async Task ClientsForwardedHost_IsNeverPassedOn()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var raw = await RawHttp.SendAsync(proxy.EndPoint, "GET / HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n");
        Assert.Equal(200, raw.Status);
        Assert.False(backend.Last.Headers.ContainsKey("X-Forwarded-Host"));
    }

    [Fact]
    public async Task BackendHeaderWithAControlCharacter_Gives502UpstreamProtocolError()
    {
        await using var backend = await ScriptedBackend.AnsweringAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Bad: a\u0001b\r\n\r\nok");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_protocol_error", response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Contains("invalid response header: X-Bad", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task BackendSendingChunkedAndContentLength_IsRelayedByItsChunks()
    {
        await using var backend = await ScriptedBackend.AnsweringAsync("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("hello world", await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("/files/a%252Fb", "/files/a%252Fb")]
    [InlineData("/files/a%2Fb", "/files/a%2Fb")]
    [InlineData("/files/100%25/x", "/files/100%25/x")]
    public async Task EncodedSlashAndEncodedPercent_ReachTheBackendAsSent(string sent, string expected)
    {
        string? seenRaw = null;
        await using var backend = await TestBackend.StartAsync("b", c =>
        {
            seenRaw = c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()!.RawTarget;
            return Task.CompletedTask;
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var raw = await RawHttp.SendAsync(proxy.EndPoint, $"GET {sent} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        Assert.Equal(200, raw.Status);
        Assert.Equal(expected, seenRaw);
    }

    [Fact]
    public async Task EncodedSlashTogetherWithEncodedPercentSlash_IsRefused()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var raw = await RawHttp.SendAsync(proxy.EndPoint, "GET /a%2Fb/c%252Fd HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.Equal(400, raw.Status);
        Assert.Equal(0, backend.Count);
    }

    [Fact]
    public async Task ResponseTimeoutRunningOutWhileConnecting_IsAConnectTimeout_AndAnotherBackendIsTried()
    {
        var (listener, fillers, port) = await Ports.BlackHoleAsync();
        try
        {
            await using var live = await TestBackend.StartAsync("live");
            await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [$"127.0.0.1:{port}", live.Address], routeExtra: "    timeouts: { response: 300ms }"));
            using var response = await proxy.Client.GetAsync("/");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var line = await proxy.Log.WaitForAsync(l => l.GetProperty("attempts").GetArrayLength() == 2);
            Assert.Equal("connect_timeout", line.GetProperty("attempts")[0].GetProperty("result").GetString());
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
            listener.Dispose();
        }
    }
}
