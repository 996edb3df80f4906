using System.Text.Json;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Health;

/// <summary>
/// Nothing silently healthy: a backend with no active check that has answered nothing yet is
/// healthy by default, and the admin API, <c>fulcrum status</c> and the metrics say it is unchecked.
/// </summary>
public sealed class UncheckedTests
{
    private static string Pools(string health, params string[] backends) => $"""
        routes: [{"{"} name: main, pool: main {"}"}]
        pools:
          - name: main
        {health}
            backends: [{string.Join(", ", backends)}]
        admin: {"{"} address: 127.0.0.1:0 {"}"}
        """;

    private static async Task<JsonElement> BackendAsync(TestProxy proxy, string name)
    {
        using var admin = proxy.AdminClient();
        return JsonDocument.Parse(await admin.GetStringAsync($"/api/v1/pools/main/backends/{name}")).RootElement.Clone();
    }

    [Fact]
    public async Task A_backend_without_checks_is_unchecked_until_it_answers_a_request()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var proxy = await TestProxy.StartAsync(Pools("", $"{{ address: {a.Address}, name: a }}"));

        var before = await BackendAsync(proxy, "a");
        Assert.Equal("healthy", before.GetProperty("status").GetString());
        Assert.Equal("unchecked", before.GetProperty("source").GetString());
        Assert.False(before.GetProperty("checked").GetBoolean());
        Assert.Contains("unchecked", before.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Contains("fulcrum_backend_unchecked{pool=\"main\",backend=\"a\"} 1", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);
        var (code, table, _) = await FulcrumProcess.RunAsync("status", "--admin", $"http://{proxy.Server.AdminEndPoint}");
        Assert.Equal(0, code);
        Assert.Contains("healthy (unchecked)", table, StringComparison.Ordinal);

        Assert.Equal("a", await proxy.Client.GetStringAsync("/"));
        var after = await BackendAsync(proxy, "a");
        Assert.Equal("config", after.GetProperty("source").GetString());
        Assert.True(after.GetProperty("checked").GetBoolean());
        Assert.Contains("fulcrum_backend_unchecked{pool=\"main\",backend=\"a\"} 0", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);
        (code, table, _) = await FulcrumProcess.RunAsync("status", "--admin", $"http://{proxy.Server.AdminEndPoint}");
        Assert.DoesNotContain("unchecked", table, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_backend_that_only_failed_stays_unchecked_and_one_proven_by_a_probe_never_was()
    {
        using var refusing = Ports.Refusing();
        await using var b = await TestBackend.StartAsync("b");
        await using var proxy = await TestProxy.StartAsync(Pools("    health: { passive: { consecutive_failures: 100 } }", $"{{ address: {refusing.Address}, name: gone }}"));
        using (var response = await proxy.Client.GetAsync("/"))
        {
            Assert.Equal(System.Net.HttpStatusCode.BadGateway, response.StatusCode);
        }
        Assert.False((await BackendAsync(proxy, "gone")).GetProperty("checked").GetBoolean());

        await using var probed = await TestProxy.StartAsync(Pools("    health: { active: { path: /health, interval: 30s } }", $"{{ address: {b.Address}, name: b }}"));
        var backend = await BackendAsync(probed, "b");
        Assert.Equal("healthy", backend.GetProperty("status").GetString());
        Assert.Equal("active", backend.GetProperty("source").GetString());
        Assert.True(backend.GetProperty("checked").GetBoolean());
    }
}
