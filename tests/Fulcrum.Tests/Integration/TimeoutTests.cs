using System.Diagnostics;
using System.Net;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Integration;

/// <summary>connect, response and idle timeouts, each named in the error it gives.</summary>
[Collection(nameof(SerialTests))]
public class TimeoutTests
{
    [Fact]
    public async Task ConnectTimeout_Gives504ConnectTimeout()
    {
        var (listener, fillers, port) = await Ports.BlackHoleAsync();
        try
        {
            await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{port}"], routeExtra: "    timeouts: { connect: 300ms }"));
            var watch = Stopwatch.StartNew();
            using var response = await proxy.Client.GetAsync("/");
            Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
            Assert.Equal("connect_timeout", response.Headers.GetValues("Fulcrum-Error").Single());
            Assert.Contains("no connection within 300ms (connect timeout)", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.InRange(watch.ElapsedMilliseconds, 250, 5000);
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
            listener.Dispose();
        }
    }

    [Fact]
    public async Task ResponseTimeout_Gives504ResponseTimeout_AndThePoolDefaultApplies()
    {
        await using var backend = await TestBackend.StartAsync("slow", async c => await Task.Delay(3000, c.RequestAborted));
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], poolExtra: "    timeouts: { response: 250ms }"));
        var watch = Stopwatch.StartNew();
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("response_timeout", response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Contains("no response headers within 250ms", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.InRange(watch.ElapsedMilliseconds, 200, 2500);
    }

    [Fact]
    public async Task RouteTimeout_BeatsPoolTimeout()
    {
        await using var backend = await TestBackend.StartAsync("slow", async c =>
        {
            await Task.Delay(600, c.RequestAborted);
            await c.Response.WriteAsync("late but fine");
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address],
            routeExtra: "    timeouts: { response: 5s }", poolExtra: "    timeouts: { response: 100ms }"));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task IdleTimeout_BackendStallsMidBody_ClientResponseIsCut()
    {
        await using var backend = await TestBackend.StartAsync("stall", async c =>
        {
            await c.Response.WriteAsync("first part");
            await c.Response.Body.FlushAsync();
            await Task.Delay(5000, c.RequestAborted);
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], routeExtra: "    timeouts: { idle: 300ms }"));
        using var response = await proxy.Client.GetAsync("/stall", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Assert.ThrowsAnyAsync<Exception>(async () => await response.Content.ReadAsStringAsync());
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/stall");
        Assert.Equal("idle_timeout", line.GetProperty("error").GetString());
    }

    [Fact]
    public async Task IdleTimeout_SlowButSteadyStream_IsNotCut()
    {
        // Each chunk comes well within the idle timeout; the whole stream takes twice as long.
        await using var backend = await TestBackend.StartAsync("steady", async c =>
        {
            for (var i = 0; i < 12; i++)
            {
                await c.Response.WriteAsync($"chunk {i}\n");
                await c.Response.Body.FlushAsync();
                await Task.Delay(200);
            }
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], routeExtra: "    timeouts: { idle: 1200ms, response: 1200ms }"));
        var body = await proxy.Client.GetStringAsync("/");
        Assert.Contains("chunk 11", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IdleTimeout_ClientStallsMidUpload_Gives408ClientTimeout()
    {
        await using var backend = await TestBackend.StartAsync("reader", async c => await new StreamReader(c.Request.Body).ReadToEndAsync());
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], routeExtra: "    timeouts: { idle: 300ms }"));
        var raw = await RawHttp.SendAsync(proxy.EndPoint, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b", idleMs: 3000);
        Assert.Equal(408, raw.Status);
        Assert.Equal("client_timeout", raw.Header("Fulcrum-Error"));
        Assert.True(raw.Closed, "the connection is closed: its framing is unknown after a cut body");
        Assert.Contains("the client sent or read nothing for 300ms", raw.Text, StringComparison.Ordinal);
    }
}
