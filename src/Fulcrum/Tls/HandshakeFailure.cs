using Fulcrum.Configuration;

namespace Fulcrum.Tls;

/// <summary>
/// A failed handshake in words, and its <c>result</c> label on <c>fulcrum_tls_handshakes_total</c>:
/// the runtime reports OpenSSL's error text, which is mapped here onto the TLS alert names
/// operators know (RFC 8446 §6.2).
/// </summary>
internal static class HandshakeFailure
{
    private static readonly (string Needle, string Result, string Words)[] Known =
    [
        ("unsupported protocol", "protocol_version", "the client offers only TLS versions below tls.min_version {0}"),
        ("wrong version number", "protocol_version", "the client offers only TLS versions below tls.min_version {0}"),
        ("version too low", "protocol_version", "the client offers only TLS versions below tls.min_version {0}"),
        ("no shared cipher", "no_shared_cipher", "the client offers no cipher suite this listener accepts"),
        ("no suitable signature", "no_shared_cipher", "the client accepts no signature algorithm the certificate can make"),
        ("unknown ca", "unknown_ca", "the client does not trust the certificate's issuer (it sent unknown_ca): serve the full chain, or give the client the CA"),
        ("certificate expired", "certificate_expired", "the client says the certificate has expired (see fulcrum certs)"),
        ("bad certificate", "bad_certificate", "the client refused the certificate (bad_certificate): often a name that does not match what it asked for"),
        ("certificate unknown", "bad_certificate", "the client refused the certificate (certificate_unknown)"),
        ("peer did not return a certificate", "no_certificate", "the client sent no certificate and tls.client_auth.mode is required"),
        ("certificate required", "no_certificate", "the client sent no certificate and tls.client_auth.mode is required"),
        ("rejected by the provided remotecertificatevalidationcallback", "client_certificate_rejected", "the client's certificate does not chain to tls.client_auth.ca, or has expired"),
        ("certificate verify failed", "client_certificate_rejected", "the client's certificate does not chain to tls.client_auth.ca, or has expired"),
        ("no application protocol", "no_application_protocol", "the client offers no ALPN protocol in tls.alpn ({1})"),
        ("unexpected eof", "client_closed", "the client closed the connection during the handshake"),
        ("0 bytes from the transport", "client_closed", "the client closed the connection during the handshake"),
        ("connection reset", "client_closed", "the client reset the connection during the handshake"),
    ];

    /// <param name="failure">What the handshake threw.</param>
    /// <param name="timedOut">Whether the handshake's deadline fired.</param>
    /// <param name="tls">The listener's TLS settings, named in the words.</param>
    /// <param name="clientSentCertificate">Whether the client sent a certificate: the runtime reports a missing and a refused one alike.</param>
    public static (string Result, string Words) Classify(Exception failure, bool timedOut, ListenerTlsConfig tls, bool clientSentCertificate = true)
    {
        if (timedOut)
        {
            return ("timeout", "the handshake did not finish within listeners[].timeouts.request_header");
        }
        var text = new System.Text.StringBuilder();
        for (var e = failure; e is not null; e = e.InnerException)
        {
            text.Append(e.Message).Append(" | ");
        }
        var all = text.ToString();
        foreach (var (needle, result, words) in Known)
        {
            if (all.Contains(needle, StringComparison.OrdinalIgnoreCase))
            {
                if (result == "client_certificate_rejected" && !clientSentCertificate)
                {
                    return ("no_certificate", "the client sent no certificate and tls.client_auth.mode is required");
                }
                return (result, string.Format(System.Globalization.CultureInfo.InvariantCulture, words, tls.MinVersion, string.Join(", ", tls.Alpn)));
            }
        }
        return ("handshake_failed", "the handshake failed: " + all.TrimEnd(' ', '|'));
    }
}
