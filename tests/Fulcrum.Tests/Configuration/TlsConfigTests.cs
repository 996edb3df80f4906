using Fulcrum.Configuration;
using System.Security.Cryptography.X509Certificates;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Configuration;

/// <summary>
/// <c>listeners[].tls</c> at load: every key binds, and a missing file, a key that is not the
/// certificate's, an encrypted key without its password, a CA file that does not parse and
/// settings that contradict each other are errors at FILE:LINE:COL that name the key and the
/// path; an expired certificate is a warning.
/// </summary>
public sealed class TlsConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fulcrum-tls-config-").FullName;
    private readonly TestCa _ca = TestCa.Create();

    public void Dispose()
    {
        _ca.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private (string Cert, string Key) Pair(string stem, DateTimeOffset? notAfter = null, params string[] names)
    {
        using var certificate = _ca.Issue(names.Length == 0 ? ["site.test"] : names, notAfter is null ? null : notAfter.Value.AddDays(-10), notAfter);
        return TestCa.WritePair(certificate, _dir, stem, _ca);
    }

    private ConfigLoadResult Load(string tls, string listenerExtra = "") => ConfigLoader.LoadText($"""
        listeners:
          - name: web
            address: 127.0.0.1:8443
        {listenerExtra}
            tls:
        {tls}
        routes: [{"{"} name: r, pool: p {"}"}]
        pools: [{"{"} name: p, backends: [127.0.0.1:9000] {"}"}]
        """, Path.Combine(_dir, "fulcrum.yaml"));

    [Fact]
    public void Every_key_binds_and_relative_paths_resolve_against_the_file()
    {
        Pair("site", null, "site.test", "*.site.test");
        _ca.WritePem(Path.Combine(_dir, "ca.pem"));
        Directory.CreateDirectory(Path.Combine(_dir, "more"));
        using (var other = _ca.Issue(["other.test"]))
        {
            TestCa.WritePair(other, Path.Combine(_dir, "more"), "other", _ca);
        }
        var result = Load("""
                  certificates:
                    - { cert: site.pem, key: site.key }
                    - { dir: more }
                  default: other.test
                  strict_sni: true
                  min_version: "1.3"
                  alpn: [http/1.1]
                  client_auth: { mode: optional, ca: ca.pem }
                  forward_client_cert: true
            """);
        Assert.True(result.Success, string.Join("\n", result.Errors));
        var tls = result.Config!.Listeners[0].Tls!;
        Assert.Equal(Path.Combine(_dir, "site.pem"), tls.Certificates[0].Cert);
        Assert.Equal(Path.Combine(_dir, "more"), tls.Certificates[1].Dir);
        Assert.Equal("other.test", tls.Default);
        Assert.True(tls.StrictSni);
        Assert.Equal("1.3", tls.MinVersion);
        Assert.Equal(["http/1.1"], tls.Alpn);
        Assert.Equal(new ClientAuthConfig("optional", Path.Combine(_dir, "ca.pem")), tls.ClientAuth);
        Assert.True(tls.ForwardClientCert);
        Assert.Equal("https", result.Config.Listeners[0].Scheme);
        Assert.Empty(result.Warnings);
    }

    [Fact]
    public void A_missing_certificate_file_names_the_key_the_path_and_the_reason_at_its_line()
    {
        var result = Load("""
                  certificates:
                    - { cert: nowhere.pem, key: nowhere.key }
            """);
        var error = Assert.Single(result.Errors);
        Assert.Equal(7, error.Line);
        Assert.Contains("listeners[0].tls.certificates[0].cert", error.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(_dir, "nowhere.pem"), error.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_that_is_not_the_certificates_is_an_error_at_the_key()
    {
        var (cert, _) = Pair("one");
        var (_, otherKey) = Pair("two");
        var result = Load($$"""
                  certificates:
                    - cert: {{cert}}
                      key: {{otherKey}}
            """);
        var error = Assert.Single(result.Errors);
        Assert.Equal(8, error.Line);
        Assert.Contains("certificates[0].key", error.Message, StringComparison.Ordinal);
        Assert.Contains("is not the key of", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_encrypted_key_needs_its_password_file_and_loads_with_it()
    {
        using var certificate = _ca.Issue(["site.test"]);
        var cert = Path.Combine(_dir, "enc.pem");
        var key = Path.Combine(_dir, "enc.key");
        File.WriteAllText(cert, TestCa.Pem(certificate, _ca));
        var encrypted = certificate.GetECDsaPrivateKey()!.ExportEncryptedPkcs8PrivateKeyPem("s3cret".AsSpan(),
            new System.Security.Cryptography.PbeParameters(System.Security.Cryptography.PbeEncryptionAlgorithm.Aes256Cbc, System.Security.Cryptography.HashAlgorithmName.SHA256, 10_000));
        File.WriteAllText(key, encrypted);
        var without = Load($$"""
                  certificates: [{ cert: {{cert}}, key: {{key}} }]
            """);
        Assert.Contains("encrypted: give its password in key_password_file", Assert.Single(without.Errors).Message, StringComparison.Ordinal);

        var wrong = Path.Combine(_dir, "wrong.txt");
        File.WriteAllText(wrong, "nope\n");
        var bad = Load($$"""
                  certificates: [{ cert: {{cert}}, key: {{key}}, key_password_file: {{wrong}} }]
            """);
        Assert.Contains("cannot be decrypted", Assert.Single(bad.Errors).Message, StringComparison.Ordinal);

        var right = Path.Combine(_dir, "password.txt");
        File.WriteAllText(right, "s3cret\n");
        var good = Load($$"""
                  certificates: [{ cert: {{cert}}, key: {{key}}, key_password_file: {{right}} }]
            """);
        Assert.True(good.Success, string.Join("\n", good.Errors));
    }

    [Fact]
    public void An_expired_certificate_is_a_warning_not_a_refusal()
    {
        var (cert, key) = Pair("old", DateTimeOffset.UtcNow.AddDays(-2));
        var result = Load($$"""
                  certificates: [{ cert: {{cert}}, key: {{key}} }]
            """);
        Assert.True(result.Success, string.Join("\n", result.Errors));
        var warning = Assert.Single(result.Warnings);
        Assert.Contains("expired on", warning.Message, StringComparison.Ordinal);
        Assert.Equal(6, warning.Line);
    }

    [Fact]
    public void Contradictions_are_errors()
    {
        var (cert, key) = Pair("site");
        var certificates = $$"""
                  certificates: [{ cert: {{cert}}, key: {{key}} }]
            """;
        Assert.Contains(Load(certificates, "    protocol: h2c").Errors, e => e.Message.Contains("h2c listener is cleartext", StringComparison.Ordinal));
        Assert.Contains(Load(certificates + "\n      forward_client_cert: true").Errors, e => e.Message.Contains("no client certificate to forward", StringComparison.Ordinal));
        Assert.Contains(Load(certificates + "\n      client_auth: { mode: required }").Errors, e => e.Message.Contains("ca is required", StringComparison.Ordinal));
        Assert.Contains(Load(certificates + "\n      default: nope.test").Errors, e => e.Message.Contains("not a name of any of the certificates", StringComparison.Ordinal));
        Assert.Contains(Load(certificates + "\n      min_version: \"1.1\"").Errors, e => e.Message.Contains("min_version", StringComparison.Ordinal));
        Assert.Contains(Load(certificates + "\n      alpn: [h3]").Errors, e => e.Message.Contains("unknown protocol 'h3'", StringComparison.Ordinal));
        Assert.Contains(Load("      certificates: []").Errors, e => e.Message.Contains("give at least one certificate", StringComparison.Ordinal));
        var notCa = Path.Combine(_dir, "not-ca.pem");
        File.WriteAllText(notCa, "hello\n");
        Assert.Contains(Load(certificates + $"\n      client_auth: {{ mode: required, ca: {notCa} }}").Errors, e => e.Message.Contains("holds no certificate", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Fulcrum_check_passes_an_expired_certificate_with_a_warning_at_its_line()
    {
        var (cert, key) = Pair("old", DateTimeOffset.UtcNow.AddDays(-2));
        var path = Path.Combine(_dir, "check.yaml");
        File.WriteAllText(path, $$"""
            listeners:
              - name: web
                address: 127.0.0.1:8443
                tls: { certificates: [{ cert: {{cert}}, key: {{key}} }] }
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9000] }]
            """);
        var (code, stdout, stderr) = await FulcrumProcess.RunAsync("check", "--config", path);
        Assert.Equal(0, code);
        Assert.Contains("configuration is valid", stdout, StringComparison.Ordinal);
        Assert.Matches(@"check\.yaml:4:\d+: warning: .*expired on", stderr);
    }
}
