using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Fulcrum.Tests.Reload;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Integration;

/// <summary>
/// TLS termination with real clients (SslStream, HttpClient, openssl s_client) and certificates
/// made at test time: SNI, versions, ALPN, client certificates, the answers to the wrong protocol,
/// and the access log's TLS fields.
/// </summary>
public sealed class TlsTests : ConfigFolder, IDisposable
{
    private readonly TestCa _ca = TestCa.Create();

    void IDisposable.Dispose()
    {
        _ca.Dispose();
        base.Dispose();
    }

    private string Pair(string stem, params string[] names)
    {
        using var certificate = _ca.Issue(names);
        var (cert, key) = TestCa.WritePair(certificate, Dir, stem, _ca);
        return $"{{ cert: {cert}, key: {key} }}";
    }

    private static string Yaml(TestBackend backend, string tls) => $$"""
        listeners:
          - name: web
            address: 127.0.0.1:0
            tls:
        {{tls}}
        routes: [{ name: r, pool: p }]
        pools: [{ name: p, backends: [{{backend.Address}}] }]
        """;

    /// <summary>A handshake as a client would make it; returns the stream (caller disposes) or throws.</summary>
    internal static async Task<SslStream> HandshakeAsync(IPEndPoint endPoint, string? sni, SslProtocols protocols = SslProtocols.None, string[]? alpn = null, X509Certificate2? clientCert = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint);
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true));
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = sni,
            EnabledSslProtocols = protocols,
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            ApplicationProtocols = alpn?.Select(a => a == "h2" ? SslApplicationProtocol.Http2 : SslApplicationProtocol.Http11).ToList(),
        };
        if (clientCert is not null)
        {
            options.ClientCertificates = [clientCert];
        }
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await ssl.AuthenticateAsClientAsync(options, timeout.Token);
            return ssl;
        }
        catch
        {
            await ssl.DisposeAsync();
            throw;
        }
    }

    /// <summary>An HttpClient that reaches <paramref name="endPoint"/> whatever the URL's host, trusting only the test CA.</summary>
    private HttpClient Client(IPEndPoint endPoint, X509Certificate2? clientCert = null)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            ConnectCallback = async (_, token) =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(endPoint, token);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(_ca.Certificate);
        handler.SslOptions.CertificateChainPolicy = policy;
        if (clientCert is not null)
        {
            handler.SslOptions.ClientCertificates = [clientCert];
        }
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
    }

    private static string ServedName(SslStream ssl) => ((X509Certificate2)ssl.RemoteCertificate!).GetNameInfo(X509NameType.DnsName, false);

    [Fact]
    public async Task Sni_chooses_exact_then_wildcard_then_default_among_three()
    {
        await using var backend = await TestBackend.StartAsync("b");
        var tls = $$"""
                  certificates:
                    - {{Pair("a", "a.example.test")}}
                    - {{Pair("wild", "*.wild.test")}}
                    - {{Pair("fallback", "fallback.test")}}
                  default: fallback.test
            """;
        await using var proxy = await StartAsync(Yaml(backend, tls));
        foreach (var (sni, expected) in new[] { ("a.example.test", "a.example.test"), ("x.wild.test", "*.wild.test"), ("deep.x.wild.test", "fallback.test"), ("other.test", "fallback.test"), ((string?)null, "fallback.test") })
        {
            await using var ssl = await HandshakeAsync(proxy.EndPoint, sni);
            Assert.Equal(expected, ServedName(ssl));
        }
        // And a request through it, verified against the CA (the chain is served).
        using var client = Client(proxy.EndPoint);
        var response = await client.GetAsync("https://x.wild.test/hello");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("https", backend.Seen.Last().Headers["X-Forwarded-Proto"]);
        Assert.Contains("fulcrum_tls_handshakes_total{listener=\"web\",result=\"ok\"}", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);
        Assert.Contains("fulcrum_tls_certificate_expiry_timestamp_seconds{listener=\"web\",name=\"*.wild.test\"}", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Strict_sni_refuses_an_unknown_name_with_unrecognized_name()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using var proxy = await StartAsync(Yaml(backend, $$"""
                  certificates: [{{Pair("a", "a.example.test")}}]
                  strict_sni: true
            """));
        await using (var ok = await HandshakeAsync(proxy.EndPoint, "a.example.test"))
        {
            Assert.Equal("a.example.test", ServedName(ok));
        }
        var e = await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(proxy.EndPoint, "b.example.test"));
        Assert.Contains("unrecognized name", Describe(e), StringComparison.OrdinalIgnoreCase);
        await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(proxy.EndPoint, null));
        Assert.Contains("fulcrum_tls_handshakes_total{listener=\"web\",result=\"unrecognized_name\"} 2", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);
    }

    private static string Describe(Exception e)
    {
        var text = new StringBuilder();
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            text.Append(x.Message).Append(" | ");
        }
        return text.ToString();
    }

    [Fact]
    public async Task Tls_1_1_is_refused_and_1_3_works_with_openssl()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using var proxy = await StartAsync(Yaml(backend, $$"""
                  certificates: [{{Pair("a", "a.example.test")}}]
            """));
        var old = await OpenSslAsync(proxy.EndPoint, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "a.example.test");
        Assert.Contains("Cipher is (NONE)", old, StringComparison.Ordinal); // no session: refused
        var modern = await OpenSslAsync(proxy.EndPoint, "-tls1_3", "-servername", "a.example.test", "-alpn", "h2,http/1.1");
        Assert.Contains("TLSv1.3", modern, StringComparison.Ordinal);
        Assert.Contains("ALPN protocol: h2", modern, StringComparison.Ordinal);
        await WaitForMetricAsync(proxy, "fulcrum_tls_handshakes_total{listener=\"web\",result=\"protocol_version\"} 1");
    }

    [Fact]
    public async Task Min_version_1_3_refuses_a_1_2_client()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using var proxy = await StartAsync(Yaml(backend, $$"""
                  certificates: [{{Pair("a", "a.example.test")}}]
                  min_version: "1.3"
            """));
        await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(proxy.EndPoint, "a.example.test", SslProtocols.Tls12));
        await using var ok = await HandshakeAsync(proxy.EndPoint, "a.example.test", SslProtocols.Tls13);
        Assert.Equal(SslProtocols.Tls13, ok.SslProtocol);
        await WaitForMetricAsync(proxy, "result=\"protocol_version\"} 1");
    }

    private static async Task WaitForMetricAsync(TestProxy proxy, string text)
    {
        var deadline = Stopwatch.StartNew();
        while (!proxy.Server.ScrapeMetrics().Contains(text, StringComparison.Ordinal))
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(5), $"metrics never showed {text}:\n{proxy.Server.ScrapeMetrics()}");
            await Task.Delay(20);
        }
    }

    /// <summary>Runs <c>openssl s_client</c> against the listener and returns what it printed.</summary>
    internal static async Task<string> OpenSslAsync(IPEndPoint endPoint, params string[] args)
    {
        var start = new ProcessStartInfo("openssl") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])["s_client", "-connect", endPoint.ToString(), .. args])
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        process.StandardInput.Close(); // s_client ends at input's end
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await process.WaitForExitAsync(timeout.Token);
        return await output + await error;
    }

    [Fact]
    public async Task Alpn_serves_h2_and_http11_on_one_port()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using var proxy = await StartAsync(Yaml(backend, $$"""
                  certificates: [{{Pair("a", "a.example.test")}}]
            """));
        using var client = Client(proxy.EndPoint);
        var h2 = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "https://a.example.test/two") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact });
        Assert.Equal(HttpStatusCode.OK, h2.StatusCode);
        Assert.Equal(HttpVersion.Version20, h2.Version);
        var h1 = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "https://a.example.test/one") { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact });
        Assert.Equal(HttpStatusCode.OK, h1.StatusCode);
        Assert.Equal(HttpVersion.Version11, h1.Version);
        Assert.All(backend.Seen, s => Assert.Equal("https", s.Headers["X-Forwarded-Proto"]));
        // The access log carries the TLS fields on both.
        var lines = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/one");
        Assert.Equal("TLSv1.3", lines.GetProperty("tls_version").GetString());
        Assert.StartsWith("TLS_", lines.GetProperty("tls_cipher").GetString(), StringComparison.Ordinal);
        Assert.Equal("a.example.test", lines.GetProperty("sni").GetString());
        var two = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/two");
        Assert.Equal("HTTP/2", two.GetProperty("protocol").GetString());
        Assert.Equal("a.example.test", two.GetProperty("sni").GetString());
    }

    [Fact]
    public async Task Client_auth_required_refuses_no_certificate_and_forwards_a_verified_one()
    {
        await using var backend = await TestBackend.StartAsync("b");
        var ca = _ca.WritePem(Path.Combine(Dir, "clients-ca.pem"));
        await using var proxy = await StartAsync(Yaml(backend, $$"""
                  certificates: [{{Pair("a", "a.example.test")}}]
                  client_auth: { mode: required, ca: {{ca}} }
                  forward_client_cert: true
            """));
        using (var anonymous = Client(proxy.EndPoint))
        {
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => anonymous.GetAsync("https://a.example.test/"));
        }
        await WaitForMetricAsync(proxy, "result=\"no_certificate\"}");

        using var clientCert = _ca.Issue(["alice"], client: true, subject: "CN=alice, O=Fulcrum Tests");
        using var client = Client(proxy.EndPoint, clientCert);
        var request = new HttpRequestMessage(HttpMethod.Get, "https://a.example.test/");
        request.Headers.TryAddWithoutValidation("X-Client-Cert-Subject", "CN=mallory"); // never passes
        var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var seen = backend.Seen.Last().Headers;
        Assert.Equal("CN=alice, O=Fulcrum Tests", seen["X-Client-Cert-Subject"]);
        Assert.Equal(Convert.ToHexStringLower(clientCert.GetCertHash(System.Security.Cryptography.HashAlgorithmName.SHA256)), seen["X-Client-Cert-Sha256"]);

        // A certificate from another CA is refused too.
        using var stranger = TestCa.Create("Stranger CA");
        using var strangerCert = stranger.Issue(["eve"], client: true, subject: "CN=eve");
        using var other = Client(proxy.EndPoint, strangerCert);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => other.GetAsync("https://a.example.test/"));
        await WaitForMetricAsync(proxy, "result=\"client_certificate_rejected\"}");
    }

    [Fact]
    public async Task Plain_http_to_a_tls_port_gets_a_400_that_says_so_and_tls_to_a_plain_port_a_clean_close()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using (var proxy = await StartAsync(Yaml(backend, $$"""
                  certificates: [{{Pair("a", "a.example.test")}}]
            """)))
        {
            var response = await RawHttp.SendAsync(proxy.EndPoint, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(400, response.Status);
            Assert.Equal("tls_required", response.Header("Fulcrum-Error"));
            Assert.Contains("https://", response.Text, StringComparison.Ordinal);
            Assert.True(response.Closed);
            Assert.Contains("result=\"plain_http\"} 1", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);
        }
        await using var plain = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        var e = await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(plain.EndPoint, "a.example.test"));
        Assert.IsNotType<TimeoutException>(e);
        Assert.Contains("kind=\"tls_on_cleartext\"", plain.Server.ScrapeMetrics(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Redirect_https_sends_every_request_to_https_but_acme_challenges()
    {
        await using var backend = await TestBackend.StartAsync("b");
        await using var proxy = await StartAsync($$"""
            listeners:
              - name: web
                address: 127.0.0.1:0
                redirect_https: { port: 8443 }
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            """);
        var response = await RawHttp.SendAsync(proxy.EndPoint, "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: shop.test:80\r\n\r\n");
        Assert.Equal(308, response.Status);
        Assert.Equal("https://shop.test:8443/a/b?x=1&y=%20", response.Header("Location"));
        Assert.NotNull(response.Header("X-Request-Id"));
        var acme = await RawHttp.SendAsync(proxy.EndPoint, "GET /.well-known/acme-challenge/token HTTP/1.1\r\nHost: shop.test\r\n\r\n");
        Assert.Equal(200, acme.Status);
        Assert.Equal("/.well-known/acme-challenge/token", Assert.Single(backend.Seen).PathAndQuery);
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("status").GetInt32() == 308);
        Assert.Equal("/a/b", line.GetProperty("path").GetString());

        // The default port is left out of the URL, and the status can be another redirect.
        await System.IO.File.WriteAllTextAsync(File, (await System.IO.File.ReadAllTextAsync(File)).Replace("{ port: 8443 }", "{ status: 301 }", StringComparison.Ordinal));
        Assert.True((await proxy.Server.ReloadAsync("test")).Success);
        var moved = await RawHttp.SendAsync(proxy.EndPoint, "GET /x HTTP/1.1\r\nHost: shop.test\r\n\r\n");
        Assert.Equal(301, moved.Status);
        Assert.Equal("https://shop.test/x", moved.Header("Location"));
    }

    [Fact]
    public async Task Hsts_is_added_on_tls_only()
    {
        await using var backend = await TestBackend.StartAsync("b");
        var pair = Pair("a", "a.example.test");
        await using var proxy = await StartAsync($$"""
            listeners:
              - name: web
                address: 127.0.0.1:0
                tls: { certificates: [{{pair}}] }
              - name: plain
                address: 127.0.0.1:0
            routes: [{ name: r, pool: p, hsts: { max_age: 365d, include_subdomains: true } }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            """);
        using var client = Client(proxy.EndPoint);
        var secure = await client.GetAsync("https://a.example.test/");
        Assert.Equal("max-age=31536000; includeSubDomains", string.Join(",", secure.Headers.GetValues("Strict-Transport-Security")));
        var h2 = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "https://a.example.test/") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact });
        Assert.Equal("max-age=31536000; includeSubDomains", string.Join(",", h2.Headers.GetValues("Strict-Transport-Security")));
        var plain = await RawHttp.SendAsync(proxy.Server.ListenerEndPoint("plain"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, plain.Status);
        Assert.Null(plain.Header("Strict-Transport-Security"));
    }
}
