using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Fulcrum.Tests.TestSupport;

/// <summary>
/// A certificate authority made at test time (no key is ever committed): it issues server and
/// client certificates with ECDSA P-256 keys (quick to make), written as PEM files.
/// </summary>
public sealed class TestCa : IDisposable
{
    private readonly ECDsa _key;

    private TestCa(string name, ECDsa key, X509Certificate2 certificate)
    {
        Name = name;
        _key = key;
        Certificate = certificate;
    }

    public string Name { get; }

    public X509Certificate2 Certificate { get; }

    public static TestCa Create(string name = "Fulcrum Test CA")
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        return new TestCa(name, key, certificate);
    }

    /// <summary>Writes the CA's certificate as PEM to <paramref name="path"/> and returns the path.</summary>
    public string WritePem(string path)
    {
        File.WriteAllText(path, Certificate.ExportCertificatePem() + "\n");
        return path;
    }

    /// <summary>A server certificate for <paramref name="names"/>, with its private key.</summary>
    public X509Certificate2 Issue(string[] names, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null, bool client = false, string? subject = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject ?? $"CN={names[0]}", key, HashAlgorithmName.SHA256);
        if (!client)
        {
            var san = new SubjectAlternativeNameBuilder();
            foreach (var name in names)
            {
                san.AddDnsName(name);
            }
            request.CertificateExtensions.Add(san.Build());
        }
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(client ? "1.3.6.1.5.5.7.3.2" : "1.3.6.1.5.5.7.3.1")], false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var issued = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key),
            notBefore ?? DateTimeOffset.UtcNow.AddDays(-1), notAfter ?? DateTimeOffset.UtcNow.AddDays(90), serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>
    /// Writes <paramref name="certificate"/> as <c>STEM.pem</c> (the leaf, then this CA: a full
    /// chain) and its key as <c>STEM.key</c> in <paramref name="dir"/>; returns both paths.
    /// </summary>
    public static (string Cert, string Key) WritePair(X509Certificate2 certificate, string dir, string stem, TestCa? chain = null)
    {
        var cert = Path.Combine(dir, stem + ".pem");
        var key = Path.Combine(dir, stem + ".key");
        File.WriteAllText(cert, Pem(certificate, chain));
        File.WriteAllText(key, KeyPem(certificate));
        return (cert, key);
    }

    public static string Pem(X509Certificate2 certificate, TestCa? chain = null) =>
        certificate.ExportCertificatePem() + "\n" + (chain is null ? "" : chain.Certificate.ExportCertificatePem() + "\n");

    public static string KeyPem(X509Certificate2 certificate) => certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem() + "\n";

    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
    }
}
