namespace Fulcrum.Configuration;

/// <summary>
/// A listener's TLS (<c>listeners[].tls</c>): its certificates, how one is chosen by SNI, the
/// versions and ALPN protocols it offers, and client certificates. Paths are absolute (the loader
/// resolves them against the configuration file's folder).
/// </summary>
public sealed record ListenerTlsConfig(EquatableList<CertificateSourceConfig> Certificates)
{
    /// <summary>The certificate for a handshake with no SNI or an unknown one: a DNS name of one of them; null: the first.</summary>
    public string? Default { get; init; }

    /// <summary>Refuse a handshake whose SNI names no certificate (or that sends none) with the <c>unrecognized_name</c> alert.</summary>
    public bool StrictSni { get; init; }

    /// <summary><c>1.2</c> or <c>1.3</c>: the lowest TLS version accepted.</summary>
    public string MinVersion { get; init; } = Tls12;

    /// <summary>The ALPN protocols offered, in order of preference: <c>h2</c>, <c>http/1.1</c>.</summary>
    public EquatableList<string> Alpn { get; init; } = DefaultAlpn;

    public ClientAuthConfig ClientAuth { get; init; } = ClientAuthConfig.None;

    /// <summary>Send a verified client certificate's subject and SHA-256 to the backend (X-Client-Cert-Subject, X-Client-Cert-Sha256).</summary>
    public bool ForwardClientCert { get; init; }

    public const string Tls12 = "1.2";

    public const string Tls13 = "1.3";

    public const string H2 = "h2";

    public const string Http11 = "http/1.1";

    public static EquatableList<string> DefaultAlpn { get; } = new([H2, Http11]);
}

/// <summary>
/// Where certificates come from: one certificate file with its key (<see cref="Cert"/>,
/// <see cref="Key"/>, and <see cref="KeyPasswordFile"/> for an encrypted key), or every
/// certificate in a folder (<see cref="Dir"/>).
/// </summary>
public sealed record CertificateSourceConfig(string? Cert, string? Key, string? KeyPasswordFile, string? Dir)
{
    /// <summary>How the source is named in logs, the admin API and errors.</summary>
    public string Describe() => Dir is not null ? $"dir {Dir}" : $"{Cert}";
}

/// <summary>
/// <c>listeners[].redirect_https</c>: a cleartext listener that answers every request with a
/// redirect to the same host, path and query on HTTPS, except ACME's HTTP-01 challenges.
/// </summary>
public sealed record RedirectHttpsConfig(int Port, int Status)
{
    public static readonly int[] Statuses = [301, 302, 307, 308];

    /// <summary>The path prefix that is never redirected: ACME HTTP-01 answers there (RFC 8555 §8.3).</summary>
    public const string AcmeChallengePrefix = "/.well-known/acme-challenge/";
}

/// <summary><c>routes[].hsts</c>: the <c>Strict-Transport-Security</c> header added to the route's responses on TLS (RFC 6797).</summary>
public sealed record HstsConfig(TimeSpan MaxAge, bool IncludeSubdomains, bool Preload)
{
    /// <summary>The header's value, like <c>max-age=31536000; includeSubDomains</c>.</summary>
    public string HeaderValue => $"max-age={(long)MaxAge.TotalSeconds}{(IncludeSubdomains ? "; includeSubDomains" : "")}{(Preload ? "; preload" : "")}";
}

/// <summary>Client certificates: <c>none</c>, <c>optional</c> (asked for, verified when sent) or <c>required</c>; verified against the CAs in <see cref="Ca"/>.</summary>
public sealed record ClientAuthConfig(string Mode, string? Ca)
{
    public static ClientAuthConfig None { get; } = new(NoneMode, null);

    public const string NoneMode = "none";

    public const string OptionalMode = "optional";

    public const string RequiredMode = "required";
}

/// <summary>
/// <c>pools[].tls</c>: TLS to the pool's backends, for traffic and health checks alike. The name
/// checked (and sent as SNI) is <see cref="ServerName"/>, else the backend's host as written;
/// the certificate must chain to <see cref="Ca"/>, else to the system's trusted roots.
/// </summary>
public sealed record UpstreamTlsConfig(string? ServerName, string? Ca, bool Verify, string? ClientCert, string? ClientKey, string MinVersion)
{
    /// <summary>The client key's password file, for an encrypted key.</summary>
    public string? ClientKeyPasswordFile { get; init; }

    public string Describe() => $"tls{(ServerName is null ? "" : $" (server_name {ServerName})")}";
}
