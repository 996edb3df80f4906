using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Fulcrum.Tls;

/// <summary>
/// A certificate ready to serve: the leaf with its key, the chain sent after it, and the
/// <see cref="SslStreamCertificateContext"/> built once for it (so a handshake does not build the
/// chain again, and the runtime can resume sessions per context).
/// </summary>
internal sealed class LoadedCertificate
{
    public LoadedCertificate(X509Certificate2 leaf, X509Certificate2Collection chain, string file)
    {
        Leaf = leaf;
        File = file;
        Names = CertificateNames.Of(leaf);
        Sha256 = Convert.ToHexStringLower(leaf.GetCertHash(System.Security.Cryptography.HashAlgorithmName.SHA256));
        Context = SslStreamCertificateContext.Create(leaf, chain, offline: true);
    }

    public X509Certificate2 Leaf { get; }

    /// <summary>The certificate file it came from.</summary>
    public string File { get; }

    /// <summary>Its DNS names (subject alternative names; the subject's CN when it has none), lower case.</summary>
    public IReadOnlyList<string> Names { get; }

    public string Sha256 { get; }

    public SslStreamCertificateContext Context { get; }

    public DateTimeOffset NotAfter => Leaf.NotAfter.ToUniversalTime();

    public DateTimeOffset NotBefore => Leaf.NotBefore.ToUniversalTime();

    /// <summary>The name shown for it: its first DNS name, else its subject.</summary>
    public string Name => Names.Count > 0 ? Names[0] : Leaf.Subject;
}

/// <summary>A certificate's DNS names: subject alternative names, else the subject's CN, lower case.</summary>
internal static class CertificateNames
{
    public static string[] Of(X509Certificate2 leaf)
    {
        var names = new List<string>();
        foreach (var extension in leaf.Extensions)
        {
            if (extension is X509SubjectAlternativeNameExtension san)
            {
                foreach (var name in san.EnumerateDnsNames())
                {
                    names.Add(name.ToLowerInvariant());
                }
            }
        }
        if (names.Count == 0 && leaf.GetNameInfo(X509NameType.DnsName, forIssuer: false) is { Length: > 0 } cn)
        {
            names.Add(cn.ToLowerInvariant());
        }
        return [.. names];
    }
}
