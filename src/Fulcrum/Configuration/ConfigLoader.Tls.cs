using Fulcrum.Tls;
using YamlDotNet.RepresentationModel;

namespace Fulcrum.Configuration;

/// <summary>
/// <c>listeners[].tls</c>. Certificate, key and CA files are read here, so a missing file, a key
/// that is not its certificate's or a CA file that does not parse is an error at its line, with
/// the path and the reason, before anything starts or reloads; an expired certificate is a
/// warning.
/// </summary>
public static partial class ConfigLoader
{
    private static readonly string[] TlsKeys = ["certificates", "default", "strict_sni", "min_version", "alpn", "client_auth", "forward_client_cert"];
    private static readonly string[] CertificateKeys = ["cert", "key", "key_password_file", "dir"];
    private static readonly string[] ClientAuthKeys = ["mode", "ca"];
    private static readonly string[] TlsVersions = [ListenerTlsConfig.Tls12, ListenerTlsConfig.Tls13];
    private static readonly string[] AlpnProtocols = [ListenerTlsConfig.H2, ListenerTlsConfig.Http11];
    private static readonly string[] ClientAuthModes = [ClientAuthConfig.NoneMode, ClientAuthConfig.OptionalMode, ClientAuthConfig.RequiredMode];

    private static readonly string[] RedirectKeys = ["port", "status"];
    private static readonly string[] HstsKeys = ["max_age", "include_subdomains", "preload"];

    private static readonly string[] PoolTlsKeys = ["enabled", "server_name", "ca", "verify", "client_cert", "min_version"];
    private static readonly string[] ClientCertKeys = ["cert", "key", "key_password_file"];

    /// <summary><c>pools[].tls</c>: the CA and client certificate files are read now, so a bad one is an error at its line.</summary>
    private static UpstreamTlsConfig? ReadPoolTls(YamlMap pool)
    {
        var map = pool.Map("tls", PoolTlsKeys);
        if (map is null || map.Bool("enabled") == false)
        {
            return null;
        }
        string? ca = null;
        if (map.String("ca") is { Length: > 0 } caText)
        {
            ca = map.ResolvePath(caText);
            if (ReadCa(ca) is { } problem)
            {
                map.Error(map.Value("ca")!, $"{map.Describe("ca")}: {problem}");
            }
        }
        string? clientCert = null, clientKey = null, clientPassword = null;
        if (map.Map("client_cert", ClientCertKeys) is { } client)
        {
            var cert = client.String("cert", required: true);
            var key = client.String("key");
            if (cert is { Length: > 0 })
            {
                clientCert = client.ResolvePath(cert);
                clientKey = key is { Length: > 0 } ? client.ResolvePath(key) : clientCert;
                clientPassword = client.String("key_password_file") is { Length: > 0 } pw ? client.ResolvePath(pw) : null;
                Check(client, key is { Length: > 0 } ? "key" : "cert", clientCert, clientKey, clientPassword, []);
            }
        }
        var serverName = map.String("server_name");
        return new UpstreamTlsConfig(string.IsNullOrEmpty(serverName) ? null : serverName, ca, map.Bool("verify") ?? true, clientCert, clientKey,
            map.OneOf("min_version", TlsVersions) ?? ListenerTlsConfig.Tls12) { ClientKeyPasswordFile = clientPassword };
    }

    private static RedirectHttpsConfig? ReadRedirectHttps(YamlMap listener)
    {
        if (!listener.Has("redirect_https"))
        {
            return null;
        }
        if (listener.Value("redirect_https") is YamlScalarNode)
        {
            // "redirect_https: true" takes the defaults; false or empty: none.
            return listener.Bool("redirect_https") == true ? new RedirectHttpsConfig(443, 308) : null;
        }
        var map = listener.Map("redirect_https", RedirectKeys);
        if (map is null)
        {
            return null;
        }
        var status = map.Int("status", 300, 399) ?? 308;
        if (!RedirectHttpsConfig.Statuses.Contains(status))
        {
            map.Error(map.Value("status")!, $"{map.Describe("status")}: {status} is not a redirect a browser follows with the same URL (use 301, 302, 307 or 308)");
        }
        if (listener.Has("tls"))
        {
            listener.Error(listener.Value("redirect_https")!, $"{listener.Describe("redirect_https")}: this listener has tls itself; redirect_https belongs on the cleartext listener that sends clients to it");
        }
        return new RedirectHttpsConfig(map.Int("port", 1, 65535) ?? 443, status);
    }

    private static HstsConfig? ReadHsts(YamlMap route)
    {
        var map = route.Map("hsts", HstsKeys);
        if (map is null)
        {
            return null;
        }
        return new HstsConfig(map.Duration("max_age", allowZero: true, max: TimeSpan.FromDays(3650)) ?? TimeSpan.FromDays(365), map.Bool("include_subdomains") ?? false, map.Bool("preload") ?? false);
    }

    private static ListenerTlsConfig? ReadListenerTls(YamlMap listener, string? protocol)
    {
        var map = listener.Map("tls", TlsKeys);
        if (map is null)
        {
            return null;
        }
        if (protocol == ListenerConfig.H2cProtocol)
        {
            listener.Error(listener.Value("tls")!, $"{listener.Describe("tls")}: an h2c listener is cleartext HTTP/2; for HTTP/2 over TLS use protocol http with tls (ALPN offers h2 and http/1.1 on one port)");
            return null;
        }
        var sources = new List<CertificateSourceConfig>();
        var names = new List<string>();
        var items = map.Sequence("certificates");
        if (items.Count == 0)
        {
            map.Error(map.Value("certificates") ?? map.Node, $"{map.Describe("certificates")}: give at least one certificate, like '- {{ cert: site.pem, key: site.key }}' or '- {{ dir: /etc/fulcrum/certs }}'");
        }
        for (var i = 0; i < items.Count; i++)
        {
            var item = map.Item(items[i], $"{map.Describe("certificates")}[{i}]", CertificateKeys);
            if (item is not null && ReadCertificateSource(item, names) is { } source)
            {
                sources.Add(source);
            }
        }
        var alpn = map.Strings("alpn");
        foreach (var p in alpn)
        {
            if (!AlpnProtocols.Contains(p))
            {
                map.Error(map.Value("alpn")!, $"{map.Describe("alpn")}: unknown protocol '{p}'{Suggest.DidYouMean(p, AlpnProtocols)} (expected h2, http/1.1 or both)");
            }
        }
        if (map.Has("alpn") && alpn.Count == 0)
        {
            map.Error(map.Value("alpn")!, $"{map.Describe("alpn")}: give at least one protocol (h2, http/1.1)");
        }
        var defaultName = map.String("default");
        if (defaultName is { Length: > 0 } && names.Count > 0 && !names.Exists(n => SniSelector.Covers(n, defaultName)))
        {
            map.Error(map.Value("default")!, $"{map.Describe("default")}: '{defaultName}' is not a name of any of the certificates (they have: {string.Join(", ", names.Distinct())})");
        }
        var clientAuth = ClientAuthConfig.None;
        if (map.Map("client_auth", ClientAuthKeys) is { } auth)
        {
            var mode = auth.OneOf("mode", ClientAuthModes) ?? ClientAuthConfig.RequiredMode;
            var ca = auth.String("ca");
            string? caPath = null;
            if (ca is { Length: > 0 })
            {
                caPath = auth.ResolvePath(ca);
                var problem = ReadCa(caPath);
                if (problem is not null)
                {
                    auth.Error(auth.Value("ca")!, $"{auth.Describe("ca")}: {problem}");
                }
            }
            else if (mode != ClientAuthConfig.NoneMode)
            {
                auth.Error(auth.Node, $"{auth.Describe("ca")} is required with mode {mode}: the CA certificates (PEM) that client certificates must chain to");
            }
            clientAuth = new ClientAuthConfig(mode, caPath);
        }
        var forward = map.Bool("forward_client_cert") ?? false;
        if (forward && clientAuth.Mode == ClientAuthConfig.NoneMode)
        {
            map.Error(map.Value("forward_client_cert")!, $"{map.Describe("forward_client_cert")}: there is no client certificate to forward without client_auth (mode optional or required)");
        }
        var tls = new ListenerTlsConfig(new(sources))
        {
            Default = string.IsNullOrEmpty(defaultName) ? null : defaultName.ToLowerInvariant(),
            StrictSni = map.Bool("strict_sni") ?? false,
            MinVersion = map.OneOf("min_version", TlsVersions) ?? ListenerTlsConfig.Tls12,
            Alpn = alpn.Count == 0 ? ListenerTlsConfig.DefaultAlpn : new([.. alpn.Distinct()]),
            ClientAuth = clientAuth,
            ForwardClientCert = forward,
        };
        map.LocateSelf(tls);
        return tls;
    }

    /// <summary>One certificates entry: reads its files now and reports what is wrong with them at the entry's keys.</summary>
    private static CertificateSourceConfig? ReadCertificateSource(YamlMap item, List<string> names)
    {
        var dir = item.String("dir");
        var cert = item.String("cert");
        var key = item.String("key");
        var password = item.String("key_password_file");
        if (dir is { Length: > 0 })
        {
            if (cert is not null || key is not null)
            {
                item.Error(item.Node, $"{item.Path}: give either dir or cert and key, not both");
                return null;
            }
            var path = item.ResolvePath(dir);
            if (!Directory.Exists(path))
            {
                item.Error(item.Value("dir")!, $"{item.Describe("dir")}: the folder {path} does not exist");
                return null;
            }
            var found = CertificateFiles.InFolder(path);
            if (found.Count == 0)
            {
                item.Error(item.Value("dir")!, $"{item.Describe("dir")}: {path} holds no certificate (*.pem or *.crt with a '-----BEGIN CERTIFICATE-----' block)");
                return null;
            }
            foreach (var (c, k) in found)
            {
                Check(item, "dir", c, k, null, names);
            }
            return new CertificateSourceConfig(null, null, null, path);
        }
        if (cert is not { Length: > 0 })
        {
            item.Error(item.Node, $"{item.Path}: give cert (and key), or dir");
            return null;
        }
        var certPath = item.ResolvePath(cert);
        var keyPath = key is { Length: > 0 } ? item.ResolvePath(key) : certPath;
        var passwordPath = password is { Length: > 0 } ? item.ResolvePath(password) : null;
        Check(item, key is { Length: > 0 } ? "key" : "cert", certPath, keyPath, passwordPath, names);
        return new CertificateSourceConfig(certPath, keyPath, passwordPath, null);
    }

    private static void Check(YamlMap item, string keyField, string cert, string key, string? password, List<string> names)
    {
        var contents = CertificateFiles.Read(cert, key, password, out var error);
        var loaded = contents is null ? null : CertificateFiles.Load(cert, key, contents, out error);
        if (loaded is null)
        {
            // Point at the key that names the file at fault.
            var field = error is not null && error.Contains(cert, StringComparison.Ordinal) && !error.StartsWith(key + " ", StringComparison.Ordinal) && item.Has("cert") ? "cert" : keyField;
            if (error is not null && password is not null && error.Contains(password, StringComparison.Ordinal))
            {
                field = "key_password_file";
            }
            item.Error(item.Value(field) ?? item.Node, $"{item.Describe(field)}: {error}");
            return;
        }
        names.AddRange(loaded.Names);
        if (loaded.NotAfter <= DateTimeOffset.UtcNow)
        {
            item.Warn(item.Value(item.Has("cert") ? "cert" : "dir") ?? item.Node, $"{item.Path}: the certificate in {cert} ({loaded.Name}) expired on {loaded.NotAfter:yyyy-MM-dd HH:mm} UTC; clients will refuse it");
        }
        else if (loaded.NotBefore > DateTimeOffset.UtcNow)
        {
            item.Warn(item.Value(item.Has("cert") ? "cert" : "dir") ?? item.Node, $"{item.Path}: the certificate in {cert} ({loaded.Name}) is not valid before {loaded.NotBefore:yyyy-MM-dd HH:mm} UTC; clients will refuse it until then");
        }
        loaded.Leaf.Dispose();
    }

    private static string? ReadCa(string path)
    {
        try
        {
            var cas = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
            cas.ImportFromPemFile(path);
            return cas.Count == 0 ? $"{path} holds no certificate (no '-----BEGIN CERTIFICATE-----' block)" : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return e is FileNotFoundException or DirectoryNotFoundException ? $"cannot read {path}: it does not exist" : $"cannot read {path}: {e.Message}";
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            return $"{path} is not a PEM certificate file ({e.Message})";
        }
    }
}
