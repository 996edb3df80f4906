using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Fulcrum.Tls;

/// <summary>
/// What a TLS connection negotiated, as a connection feature: the access log's
/// <c>tls_version</c>, <c>tls_cipher</c> and <c>sni</c>, the client certificate forwarded to
/// backends, and the features Kestrel reads for a connection it serves (the scheme, ALPN).
/// </summary>
internal sealed class TlsConnection : ITlsConnectionFeature, ITlsApplicationProtocolFeature
{
    public TlsConnection(SslStream ssl, string? serverName)
    {
        Version = ssl.SslProtocol switch
        {
            SslProtocols.Tls13 => "TLSv1.3",
            SslProtocols.Tls12 => "TLSv1.2",
            var other => other.ToString(),
        };
        Cipher = CipherNames.GetOrAdd(ssl.NegotiatedCipherSuite, static s => s.ToString());
        ServerName = serverName;
        ApplicationProtocol = ssl.NegotiatedApplicationProtocol.Protocol;
        if (ssl.RemoteCertificate is { } remote)
        {
            ClientCertificate = remote as X509Certificate2 ?? new X509Certificate2(remote);
            ClientSubject = ClientCertificate.Subject;
            ClientSha256 = Convert.ToHexStringLower(ClientCertificate.GetCertHash(System.Security.Cryptography.HashAlgorithmName.SHA256));
        }
    }

    // One string per cipher suite, so the access log's table of known values stays small.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<TlsCipherSuite, string> CipherNames = new();

    /// <summary><c>TLSv1.2</c> or <c>TLSv1.3</c>, as OpenSSL and nginx write it.</summary>
    public string Version { get; }

    /// <summary>The IANA name of the cipher suite, like <c>TLS_AES_128_GCM_SHA256</c>.</summary>
    public string Cipher { get; }

    /// <summary>The name the client asked for (SNI), or null when it sent none.</summary>
    public string? ServerName { get; }

    /// <summary>The verified client certificate's subject (only verified ones are kept), or null.</summary>
    public string? ClientSubject { get; }

    /// <summary>The verified client certificate's SHA-256, lower-case hex, or null.</summary>
    public string? ClientSha256 { get; }

    /// <summary>Whether the listener forwards <see cref="ClientSubject"/> and <see cref="ClientSha256"/> to backends.</summary>
    public bool ForwardClientCert { get; init; }

    public X509Certificate2? ClientCertificate { get; set; }

    public ReadOnlyMemory<byte> ApplicationProtocol { get; }

    /// <summary>Whether ALPN chose HTTP/2 (the connection then goes to Kestrel's HTTP/2).</summary>
    public bool IsHttp2 => ApplicationProtocol.Span.SequenceEqual(SslApplicationProtocol.Http2.Protocol.Span);

    public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult(ClientCertificate);
}
