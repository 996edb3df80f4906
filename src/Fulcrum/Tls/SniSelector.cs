using Fulcrum.Configuration;

namespace Fulcrum.Tls;

/// <summary>
/// A listener's certificates by name, for choosing one per handshake from the client's SNI: an
/// exact DNS name first, then a wildcard one label deep (<c>*.example.com</c> serves
/// <c>a.example.com</c>, not <c>a.b.example.com</c>, RFC 6125 §6.4.3), then the default
/// (<c>tls.default</c>, else the first certificate). Built when the certificates change, read
/// without a lock per handshake.
/// </summary>
internal sealed class SniSelector
{
    private readonly Dictionary<string, LoadedCertificate> _exact = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, LoadedCertificate> _wildcard = new(StringComparer.OrdinalIgnoreCase);

    public SniSelector(IReadOnlyList<LoadedCertificate> certificates, string? defaultName)
    {
        All = certificates;
        foreach (var certificate in certificates)
        {
            foreach (var name in certificate.Names)
            {
                if (name.StartsWith("*.", StringComparison.Ordinal))
                {
                    _wildcard.TryAdd(name[2..], certificate); // the first listed wins
                }
                else
                {
                    _exact.TryAdd(name, certificate);
                }
            }
        }
        Default = defaultName is null ? certificates.FirstOrDefault() : Match(defaultName) ?? certificates.FirstOrDefault();
    }

    /// <summary>Builds the table for a listener from the certificates its sources serve now.</summary>
    public static SniSelector For(ListenerTlsConfig tls, CertificateCatalog catalog) =>
        new([.. tls.Certificates.SelectMany(s => catalog.Get(s).Current)], tls.Default);

    public IReadOnlyList<LoadedCertificate> All { get; }

    public LoadedCertificate? Default { get; }

    /// <summary>The certificate for <paramref name="sni"/>; null when it names none and <paramref name="strict"/> (or there are none at all).</summary>
    public LoadedCertificate? Select(string? sni, bool strict)
    {
        if (string.IsNullOrEmpty(sni))
        {
            return strict ? null : Default;
        }
        return Match(sni) ?? (strict ? null : Default);
    }

    /// <summary>Whether a certificate name (exact, or a wildcard one label deep) covers <paramref name="host"/>, as <see cref="Match"/> decides it.</summary>
    public static bool Covers(string name, string host)
    {
        host = host.TrimEnd('.');
        if (!name.StartsWith("*.", StringComparison.Ordinal))
        {
            return string.Equals(name, host, StringComparison.OrdinalIgnoreCase);
        }
        var dot = host.IndexOf('.', StringComparison.Ordinal);
        return dot > 0 && string.Equals(name[2..], host[(dot + 1)..], StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The certificate whose names cover <paramref name="host"/>, or null.</summary>
    public LoadedCertificate? Match(string host)
    {
        if (host.EndsWith('.'))
        {
            host = host[..^1];
        }
        if (_exact.TryGetValue(host, out var exact))
        {
            return exact;
        }
        var dot = host.IndexOf('.', StringComparison.Ordinal);
        return dot > 0 && _wildcard.TryGetValue(host[(dot + 1)..], out var wild) ? wild : null;
    }
}
