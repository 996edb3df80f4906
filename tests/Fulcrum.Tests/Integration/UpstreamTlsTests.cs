using System.Net;
using Fulcrum.Tests.Reload;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Integration;

/// <summary>
/// <c>pools[].tls</c> against real Kestrel backends serving HTTPS: a good certificate serves on
/// reused connections and is probed; an expired, a wrong-name and an unknown-CA certificate each
/// give 502 upstream_tls_error with the reason in words; a client certificate is presented.
/// </summary>
public sealed class UpstreamTlsTests : ConfigFolder, IDisposable
{
    private readonly TestCa _ca = TestCa.Create("Backend CA");

    void IDisposable.Dispose()
    {
        _ca.Dispose();
        Dispose();
    }

    private string Yaml(TestBackend backend, string tls, string health = "") => $$"""
        listeners: [{ name: web, address: 127.0.0.1:0 }]
        routes: [{ name: r, pool: p }]
        pools:
          - name: p
            backends: [{{backend.Address}}]
            tls: {{tls}}
            retries: { attempts: 1 }
        {{health}}
        """;

    [Fact]
    public async Task A_verified_backend_serves_over_reused_tls_connections_and_passes_its_https_probe()
    {
        using var certificate = _ca.Issue(["backend.test"]);
        await using var backend = await TestBackend.StartAsync("secure", tls: certificate);
        var ca = _ca.WritePem(Path.Combine(Dir, "ca.pem"));
        await using var proxy = await StartAsync(Yaml(backend, $"{{ server_name: backend.test, ca: {ca} }}",
            "    health: { active: { path: /health, interval: 1s, timeout: 2s } }"));
        for (var i = 0; i < 5; i++)
        {
            var response = await proxy.Client.GetAsync("/x");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("secure", await response.Content.ReadAsStringAsync());
        }
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/x" && l.GetProperty("upstream_connect_ms").ValueKind == System.Text.Json.JsonValueKind.Null);
        Assert.Equal(200, line.GetProperty("status").GetInt32()); // a reused connection: no connect time
        Assert.Contains(backend.Seen, s => s.PathAndQuery == "/health");
    }

    [Theory]
    [InlineData("expired", "certificate expired on")]
    [InlineData("wrong-name", "name mismatch: wanted backend.test, the certificate has other.test")]
    [InlineData("unknown-ca", "unknown issuer: CN=Stranger CA is not trusted")]
    public async Task A_bad_backend_certificate_is_upstream_tls_error_with_the_reason(string kind, string reason)
    {
        using var stranger = TestCa.Create("Stranger CA");
        using var certificate = kind switch
        {
            "expired" => _ca.Issue(["backend.test"], DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1)),
            "wrong-name" => _ca.Issue(["other.test"]),
            _ => stranger.Issue(["backend.test"]),
        };
        await using var backend = await TestBackend.StartAsync("secure", tls: certificate);
        var ca = _ca.WritePem(Path.Combine(Dir, "ca.pem"));
        await using var proxy = await StartAsync(Yaml(backend, $"{{ server_name: backend.test, ca: {ca} }}"));
        var response = await proxy.Client.GetAsync("/x");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_tls_error", response.Headers.GetValues("Fulcrum-Error").Single());
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains(reason, body, StringComparison.Ordinal);
        Assert.Empty(backend.Seen); // the request never left
    }

    [Fact]
    public async Task Verify_false_accepts_any_certificate_and_a_client_certificate_is_presented()
    {
        using var stranger = TestCa.Create("Stranger CA");
        using var certificate = stranger.Issue(["anything.test"]);
        await using var backend = await TestBackend.StartAsync("secure", tls: certificate, clientCertificate: true);
        using var client = _ca.Issue(["fulcrum"], client: true, subject: "CN=fulcrum-proxy");
        var (cert, key) = TestCa.WritePair(client, Dir, "client", _ca);
        await using var proxy = await StartAsync(Yaml(backend, $"{{ verify: false, client_cert: {{ cert: {cert}, key: {key} }} }}"));
        var response = await proxy.Client.GetAsync("/x");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("CN=fulcrum-proxy", backend.Seen.Single().Headers["X-Seen-Client-Cert"]);
    }

    [Fact]
    public async Task A_cleartext_backend_behind_tls_is_a_handshake_refusal_in_words()
    {
        await using var backend = await TestBackend.StartAsync("plain");
        await using var proxy = await StartAsync(Yaml(backend, "{ verify: false }"));
        var response = await proxy.Client.GetAsync("/x");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_tls_error", response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Contains("handshake refused", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
