using System.Net;
using System.Net.Http.Json;
using Fulcrum.Configuration;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Resilience;

/// <summary>Defects a second review found in retries, health and the admin API, each pinned by a test.</summary>
public class ReviewRegressionTests
{
    [Fact]
    public async Task RetryableStatus_AfterABodyTooLargeToReplay_IsRelayedNotRetried()
    {
        string? secondBody = null;
        await using var unavailable = await TestBackend.StartAsync("unavailable", async ctx =>
        {
            await new StreamReader(ctx.Request.Body).ReadToEndAsync();
            ctx.Response.StatusCode = 503;
        });
        await using var good = await TestBackend.StartAsync("good", async ctx => secondBody = await new StreamReader(ctx.Request.Body).ReadToEndAsync());
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [unavailable.Address, good.Address], routeExtra: "    retries: { on: [503], max_body: 1KiB }"));
        using var request = new HttpRequestMessage(HttpMethod.Put, "/big") { Content = new StreamContent(new MemoryStream(new byte[5000])) };
        request.Headers.TransferEncodingChunked = true;
        using var response = await proxy.Client.SendAsync(request);
        // The body outgrew max_body, so a retry could not send it whole: the backend's 503 stands.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Null(secondBody);
    }

    [Fact]
    public async Task HeldResponse_WhenTheOnlyBackendIsEjectedMeanwhile_IsRelayedAsItWas()
    {
        await using var unavailable = await TestBackend.StartAsync("unavailable", ctx =>
        {
            ctx.Response.StatusCode = 503;
            ctx.Response.Headers["X-From"] = "backend";
            return ctx.Response.WriteAsync("the backend's own 503");
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [unavailable.Address],
            routeExtra: "    retries: { on: [503] }", poolExtra: "    health: { passive: { consecutive_5xx: 1 } }"));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("backend", response.Headers.GetValues("X-From").Single());
        Assert.Equal("the backend's own 503", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task AdminPost_WithNoBodyAtAll_Works_AndBadInputIsA400()
    {
        await using var b = await TestBackend.StartAsync("b");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [$"{{ address: {b.Address}, name: b }}"]), admin: "admin: { address: 127.0.0.1:0 }");
        using var admin = proxy.AdminClient();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/pools/main/backends/b/disable"))
        {
            using var response = await admin.SendAsync(request); // no Content-Length, no body: curl -X POST
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        using var zeroTtl = await admin.PostAsJsonAsync("/api/v1/pools/main/backends/b/drain", new { ttl = "0s" });
        Assert.Equal(HttpStatusCode.BadRequest, zeroTtl.StatusCode);
        using var slash = await admin.PostAsJsonAsync("/api/v1/pools/main/backends", new { address = "127.0.0.1:9", name = "a/b" });
        Assert.Equal(HttpStatusCode.BadRequest, slash.StatusCode);
        using var empty = await admin.PostAsJsonAsync("/api/v1/pools/main/backends", new { address = "127.0.0.1:9", name = "" });
        Assert.Equal(HttpStatusCode.BadRequest, empty.StatusCode);
        using var padded = await admin.PostAsJsonAsync("/api/v1/pools/main/backends", new { address = $" {b.Address}" });
        Assert.Equal(HttpStatusCode.OK, padded.StatusCode); // the same backend, not a new one
    }

    [Fact]
    public async Task AddedAndRemovedAtOnce_LeavesNoProbeLoop()
    {
        await using var b = await TestBackend.StartAsync("b");
        await using var other = await TestBackend.StartAsync("other");
        await using var proxy = await TestProxy.StartAsync($$"""
            routes: [{ name: main, pool: main }]
            pools: [{ name: main, health: { active: { path: /h, interval: 30s, fast_interval: 50ms } }, backends: [{{other.Address}}] }]
            """);
        var runtime = proxy.Server.Runtime;
        for (var i = 0; i < 20; i++)
        {
            runtime.AddBackend("main", new BackendConfig(b.Address, new HostPort("127.0.0.1", b.Port), 1, null));
            runtime.RemoveBackend("main", b.Address);
        }
        await Task.Delay(300);
        Assert.Equal(1, runtime.Prober.LoopCount);
        var probes = b.Seen.Count;
        await Task.Delay(300);
        Assert.Equal(probes, b.Seen.Count);
    }
}
