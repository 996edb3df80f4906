using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Integration;

/// <summary>One JSON line per request, with every field an operator needs at 3 a.m.</summary>
public class AccessLogTests
{
    [Fact]
    public async Task Line_HasEveryField()
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            var body = await new StreamReader(c.Request.Body).ReadToEndAsync();
            c.Response.StatusCode = 201;
            await c.Response.WriteAsync("created:" + body);
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"{{ address: {backend.Address}, name: api-1 }}"]));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/orders?secret=1") { Content = new StringContent("hello") };
        request.Headers.Host = "shop.example.com";
        request.Headers.TryAddWithoutValidation("X-Request-Id", "abc-123");
        using var response = await proxy.Client.SendAsync(request);

        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("request_id").GetString() == "abc-123");
        Assert.True(DateTimeOffset.TryParse(line.GetProperty("time").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _));
        Assert.Equal("127.0.0.1", line.GetProperty("client").GetString());
        Assert.Equal("POST", line.GetProperty("method").GetString());
        Assert.Equal("shop.example.com", line.GetProperty("host").GetString());
        // The path without the query: query strings carry secrets and blow up log volume.
        Assert.Equal("/orders", line.GetProperty("path").GetString());
        Assert.Equal("HTTP/1.1", line.GetProperty("protocol").GetString());
        Assert.Equal(201, line.GetProperty("status").GetInt32());
        Assert.Equal("main", line.GetProperty("route").GetString());
        Assert.Equal("main", line.GetProperty("pool").GetString());
        Assert.Equal("api-1", line.GetProperty("backend").GetString());
        Assert.Equal("", line.GetProperty("error").GetString());
        Assert.True(line.GetProperty("upstream_connect_ms").GetDouble() >= 0, "a new upstream connection was opened and timed");
        var ttfb = line.GetProperty("ttfb_ms").GetDouble();
        var total = line.GetProperty("duration_ms").GetDouble();
        Assert.InRange(ttfb, 0, total);
        Assert.Equal(5, line.GetProperty("bytes_in").GetInt64());
        Assert.Equal("created:hello".Length, line.GetProperty("bytes_out").GetInt64());
        var attempt = Assert.Single(line.GetProperty("attempts").EnumerateArray());
        Assert.Equal("api-1", attempt.GetProperty("backend").GetString());
        Assert.Equal("ok", attempt.GetProperty("result").GetString());
        Assert.Equal(201, attempt.GetProperty("status").GetInt32());
    }

    [Fact]
    public async Task ReusedUpstreamConnection_HasNullConnectTime()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        (await proxy.Client.GetAsync("/first")).Dispose();
        (await proxy.Client.GetAsync("/second")).Dispose();
        var second = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/second");
        Assert.Equal(System.Text.Json.JsonValueKind.Null, second.GetProperty("upstream_connect_ms").ValueKind);
    }

    [Fact]
    public async Task NoRoute_IsLoggedWithItsCode()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync($$"""
            routes: [{ name: only, pool: p, match: { path: /only } }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            """);
        (await proxy.Client.GetAsync("/elsewhere")).Dispose();
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/elsewhere");
        Assert.Equal("no_route", line.GetProperty("error").GetString());
        Assert.Equal(404, line.GetProperty("status").GetInt32());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, line.GetProperty("route").ValueKind);
        Assert.False(line.TryGetProperty("attempts", out _));
    }
}
