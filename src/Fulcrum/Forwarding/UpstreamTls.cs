using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Fulcrum.Configuration;

namespace Fulcrum.Forwarding;

/// <summary>
/// TLS to one pool's backends (<c>pools[].tls</c>), made once per configuration: the trusted CAs,
/// the client certificate, the versions. <see cref="AuthenticateAsync"/> turns a connected socket
/// into a verified TLS stream, or throws <see cref="UpstreamTlsException"/> whose message says in
/// words what is wrong: an expired certificate and when, a name that does not match and what the
/// certificate has, an issuer nobody trusts, a handshake the backend refused, a version.
/// Used by Fulcrum's own upstream pool, the SocketsHttpHandler path and the health probes alike.
/// </summary>
internal sealed class UpstreamTls
{
    private readonly X509Certificate2Collection? _trusted;
    private readonly X509Certificate2Collection? _clientCertificates;
    private readonly SslProtocols _protocols;

    public UpstreamTls(UpstreamTlsConfig config)
    {
        Config = config;
        _protocols = config.MinVersion == ListenerTlsConfig.Tls13 ? SslProtocols.Tls13 : SslProtocols.Tls12 | SslProtocols.Tls13;
        if (config.Ca is { } ca)
        {
            _trusted = [];
            _trusted.ImportFromPemFile(ca);
        }
        if (config.ClientCert is { } cert)
        {
            var contents = Tls.CertificateFiles.Read(cert, config.ClientKey ?? cert, config.ClientKeyPasswordFile, out var error)
                ?? throw new IOException(error);
            var loaded = Tls.CertificateFiles.Load(cert, config.ClientKey ?? cert, contents, out error) ?? throw new IOException(error);
            _clientCertificates = [loaded.Leaf];
        }
    }

    public UpstreamTlsConfig Config { get; }

    /// <summary>The name checked and sent as SNI for a backend at <paramref name="host"/>.</summary>
    public string TargetHost(string host) => Config.ServerName ?? host;

    public async ValueTask<SslStream> AuthenticateAsync(Socket socket, string host, CancellationToken cancellationToken)
    {
        var target = TargetHost(host);
        var verdict = new Verdict();
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = target,
            EnabledSslProtocols = _protocols,
            ClientCertificates = _clientCertificates,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            ApplicationProtocols = [SslApplicationProtocol.Http11],
            RemoteCertificateValidationCallback = (_, certificate, chain, errors) => verdict.Accepts = Validate(target, certificate, chain, errors, out verdict.Problem),
        };
        try
        {
            await ssl.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
            return ssl;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or System.ComponentModel.Win32Exception)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new UpstreamTlsException(verdict.Problem ?? Describe(e), e);
        }
        catch
        {
            // A timeout or the client leaving: the caller says which; the handshake's state goes now.
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private sealed class Verdict
    {
        public bool Accepts;
        public string? Problem;
    }

    /// <summary>
    /// The backend's certificate: its name must match <paramref name="target"/> and it must chain
    /// to <c>ca</c> (else the system's roots), unless <c>verify: false</c>.
    /// </summary>
    private bool Validate(string target, X509Certificate? certificate, X509Chain? presented, SslPolicyErrors errors, out string? problem)
    {
        problem = null;
        if (!Config.Verify)
        {
            return true;
        }
        if (certificate is null)
        {
            problem = "the backend sent no certificate";
            return false;
        }
        var leaf = certificate as X509Certificate2 ?? new X509Certificate2(certificate);
        var now = DateTime.Now;
        if (leaf.NotAfter < now)
        {
            problem = $"certificate expired on {leaf.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC ({leaf.Subject})";
            return false;
        }
        if (leaf.NotBefore > now)
        {
            problem = $"certificate not valid before {leaf.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm} UTC ({leaf.Subject}): check the clocks";
            return false;
        }
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            var names = Tls.CertificateNames.Of(leaf);
            problem = $"name mismatch: wanted {target}, the certificate has {(names.Length == 0 ? leaf.Subject : string.Join(", ", names))} (set pools[].tls.server_name, or fix the backend's certificate)";
            return false;
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (_trusted is not null)
        {
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(_trusted);
        }
        if (presented is not null)
        {
            foreach (var element in presented.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }
        if (chain.Build(leaf))
        {
            return true;
        }
        var status = chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (all, s) => all | s.Status);
        problem = (status & (X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain)) != 0
            ? $"unknown issuer: {leaf.Issuer} is not trusted ({(_trusted is null ? "not in the system's roots: give its CA in pools[].tls.ca" : "it does not chain to pools[].tls.ca")})"
            : $"the certificate does not verify: {string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()))}";
        return false;
    }

    private string Describe(Exception e)
    {
        var text = string.Join(" | ", Messages(e));
        if (text.Contains("protocol version", StringComparison.OrdinalIgnoreCase) || text.Contains("unsupported protocol", StringComparison.OrdinalIgnoreCase)
            || text.Contains("wrong version number", StringComparison.OrdinalIgnoreCase))
        {
            return $"protocol version: the backend accepts none of TLS {Config.MinVersion} and later (pools[].tls.min_version)";
        }
        if (text.Contains("0 bytes from the transport", StringComparison.OrdinalIgnoreCase) || text.Contains("unexpected eof", StringComparison.OrdinalIgnoreCase))
        {
            return "handshake refused: the backend closed the connection (does it speak TLS on this port?)";
        }
        if (text.Contains("certificate required", StringComparison.OrdinalIgnoreCase) || text.Contains("handshake failure", StringComparison.OrdinalIgnoreCase))
        {
            return $"handshake refused by the backend ({LastMessage(e)}){(_clientCertificates is null ? ": does it want a client certificate (pools[].tls.client_cert)?" : "")}";
        }
        return $"handshake refused: {LastMessage(e)}";
    }

    private static IEnumerable<string> Messages(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            yield return x.Message;
        }
    }

    private static string LastMessage(Exception e) => Messages(e).Last();
}

/// <summary>TLS to a backend failed: the message says why, in words (502 upstream_tls_error).</summary>
internal sealed class UpstreamTlsException(string message, Exception inner) : IOException(message, inner);
