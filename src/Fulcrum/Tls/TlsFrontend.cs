using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Fulcrum.Tls;

/// <summary>
/// TLS termination: a connection middleware on each listener with <c>tls</c>, before the HTTP
/// front ends. Per connection it reads the ClientHello without consuming it, chooses the
/// certificate by SNI (<see cref="SniSelector"/>), runs the handshake on the runtime's
/// <see cref="SslStream"/> (OpenSSL), and hands the decrypted pipes on: ALPN <c>h2</c> to
/// Kestrel's HTTP/2, anything else to Fulcrum's HTTP/1.1 loop. Every handshake is counted by
/// its result, and a failure is said in words.
/// </summary>
/// <remarks>
/// Reading the ClientHello first lets Fulcrum answer what the runtime cannot: plain HTTP sent to
/// a TLS port gets an HTTP 400 saying so, and <c>strict_sni</c> refuses an unknown name with the
/// <c>unrecognized_name</c> alert (RFC 6066 §3) before any certificate is shown.
/// </remarks>
/// <param name="listener">The listener's configuration now: a reload changes certificates, versions, ALPN and client_auth for new connections.</param>
/// <param name="catalog">The certificates, kept in step with their files.</param>
/// <param name="metrics">Where handshakes are counted.</param>
/// <param name="protocolErrors">Where failed handshakes are counted and summarised, a line a second per kind.</param>
internal sealed class TlsFrontend(Func<ListenerConfig> listener, CertificateCatalog catalog, Func<FulcrumMetrics?> metrics, SummarisedLog protocolErrors)
{
    private Settings? _settings;

    public async Task RunAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var config = listener();
        var tls = config.Tls!;
        var settings = Current(tls);
        var name = config.Name;
        using var deadline = new CancellationTokenSource(config.Timeouts.RequestHeader);
        var input = connection.Transport.Input;
        ClientHello hello;
        try
        {
            while (true)
            {
                var read = await input.ReadAsync(deadline.Token).ConfigureAwait(false);
                hello = ClientHello.Parse(read.Buffer);
                var more = hello.Status == ClientHelloStatus.NeedMore && !read.IsCompleted && read.Buffer.Length < ClientHello.MaxLength + 1024;
                // Nothing is consumed: the handshake reads the same bytes again.
                input.AdvanceTo(read.Buffer.Start, more ? read.Buffer.End : read.Buffer.Start);
                if (!more)
                {
                    if (hello.Status == ClientHelloStatus.NeedMore)
                    {
                        Fail(name, read.IsCompleted ? "client_closed" : "malformed_client_hello", read.IsCompleted ? "the client closed the connection before its ClientHello was whole" : "the ClientHello is too long");
                        return;
                    }
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            Fail(name, "client_closed", $"the connection broke before the ClientHello was whole ({e.Message})");
            return;
        }
        catch (OperationCanceledException)
        {
            Fail(name, "timeout", $"no ClientHello within {config.Timeouts.RequestHeader.TotalSeconds:0.###} s (listeners[].timeouts.request_header)");
            return;
        }
        switch (hello.Status)
        {
            case ClientHelloStatus.NotTls:
                await RefusePlainAsync(connection, config, hello).ConfigureAwait(false);
                return;
            case ClientHelloStatus.Malformed:
                Fail(name, "malformed_client_hello", $"a malformed ClientHello: {hello.Problem}");
                await AlertAsync(connection, Alert.DecodeError).ConfigureAwait(false);
                return;
        }
        var certificate = settings.Selector.Select(hello.ServerName, tls.StrictSni);
        if (certificate is null)
        {
            var asked = hello.ServerName is null ? "no server name (SNI)" : $"server name '{hello.ServerName}'";
            Fail(name, "unrecognized_name", settings.Selector.All.Count == 0
                ? $"the listener has no certificate to serve (see fulcrum certs); the client asked for {asked}"
                : $"the client asked for {asked}, which no certificate covers, and tls.strict_sni is on");
            await AlertAsync(connection, Alert.UnrecognizedName).ConfigureAwait(false);
            return;
        }

        var original = connection.Transport;
        var ssl = new SslStream(new PipeStream(original), leaveInnerStreamOpen: true);
        var client = new ClientCertificateSeen();
        try
        {
            try
            {
                await ssl.AuthenticateAsServerAsync(settings.Options(certificate, client), deadline.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException or System.ComponentModel.Win32Exception
                or ObjectDisposedException or InvalidOperationException or System.Security.Cryptography.CryptographicException)
            {
                var (result, words) = HandshakeFailure.Classify(e, deadline.IsCancellationRequested, tls, clientSentCertificate: client.Sent);
                Fail(name, result, $"{words} (SNI {hello.ServerName ?? "none"})");
                return;
            }
            metrics()?.TlsHandshake(name, "ok");
            var info = new TlsConnection(ssl, hello.ServerName) { ForwardClientCert = tls.ForwardClientCert };
            connection.Features.Set(info);
            connection.Features.Set<ITlsConnectionFeature>(info);
            connection.Features.Set<ITlsApplicationProtocolFeature>(info);
            var reader = PipeReader.Create(ssl, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4096, leaveOpen: true));
            var writer = PipeWriter.Create(ssl, new StreamPipeWriterOptions(minimumBufferSize: 4096, leaveOpen: true));
            connection.Transport = new Pipe(reader, writer);
            try
            {
                await next(connection).ConfigureAwait(false);
            }
            finally
            {
                connection.Transport = original;
                await reader.CompleteAsync().ConfigureAwait(false);
                try
                {
                    await writer.CompleteAsync().ConfigureAwait(false); // what is still buffered goes out
                    // close_notify, so the client knows the response was not cut (RFC 8446 §6.1).
                    using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                    await ssl.ShutdownAsync().WaitAsync(quick.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or OperationCanceledException or InvalidOperationException or TimeoutException)
                {
                    // The client is gone: nothing more to say to it.
                }
            }
        }
        finally
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void Fail(string listenerName, string result, string detail)
    {
        metrics()?.TlsHandshake(listenerName, result);
        protocolErrors.Report(listenerName, "tls_" + result, "TLS handshake failed: " + detail);
    }

    /// <summary>
    /// A connection that does not start with a TLS handshake. When it reads as HTTP, it gets an
    /// HTTP answer that says to use https (as nginx's "plain HTTP request was sent to HTTPS
    /// port"); anything else is closed.
    /// </summary>
    private async Task RefusePlainAsync(ConnectionContext connection, ListenerConfig config, ClientHello hello)
    {
        var read = await connection.Transport.Input.ReadAsync().ConfigureAwait(false);
        var first = read.Buffer.FirstSpan;
        var http = first.Length >= 4 && first.IndexOf((byte)' ') is > 0 and <= 16 && System.Text.Ascii.IsValid(first[..Math.Min(first.Length, 16)]);
        connection.Transport.Input.AdvanceTo(read.Buffer.End);
        Fail(config.Name, http ? "plain_http" : "not_tls", http ? "the client sent plain HTTP to a TLS listener" : hello.Problem!);
        if (http)
        {
            var port = config.Address.Port;
            await WriteAsync(connection, ErrorResponder.ConnectionRefusal(FulcrumError.TlsRequired,
                $"Listener '{config.Name}' speaks HTTPS: this was plain HTTP. Use https:// (port {port}).", retryAfter: false)).ConfigureAwait(false);
        }
    }

    private static async Task AlertAsync(ConnectionContext connection, Alert alert)
    {
        // A fatal alert in a plaintext record: before the handshake there are no keys (RFC 8446 §6).
        await WriteAsync(connection, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, (byte)alert]).ConfigureAwait(false);
    }

    private static async Task WriteAsync(ConnectionContext connection, byte[] bytes)
    {
        try
        {
            using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await connection.Transport.Output.WriteAsync(bytes, quick.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The client is gone or reads nothing: the close is all it gets.
        }
    }

    /// <summary>The handshake settings for <paramref name="tls"/>, rebuilt when it or the certificates change.</summary>
    private Settings Current(ListenerTlsConfig tls)
    {
        var settings = Volatile.Read(ref _settings);
        var generation = catalog.Generation;
        if (settings is null || !ReferenceEquals(settings.Tls, tls) || settings.Generation != generation)
        {
            settings = new Settings(tls, generation, SniSelector.For(tls, catalog));
            Volatile.Write(ref _settings, settings);
        }
        return settings;
    }

    private enum Alert : byte
    {
        DecodeError = 50,
        UnrecognizedName = 112,
    }

    /// <summary>Whether the client sent a certificate: the runtime reports a missing one and a refused one alike.</summary>
    private sealed class ClientCertificateSeen
    {
        public bool Sent;
    }

    private sealed record Pipe(PipeReader Input, PipeWriter Output) : IDuplexPipe;

    /// <summary>One listener's TLS as a handshake needs it: the SNI table, the protocols, the client CAs.</summary>
    private sealed class Settings
    {
        private readonly SslProtocols _protocols;
        private readonly List<SslApplicationProtocol> _alpn;
        private readonly X509Certificate2Collection? _clientCas;

        public Settings(ListenerTlsConfig tls, long generation, SniSelector selector)
        {
            Tls = tls;
            Generation = generation;
            Selector = selector;
            _protocols = tls.MinVersion == ListenerTlsConfig.Tls13 ? SslProtocols.Tls13 : SslProtocols.Tls12 | SslProtocols.Tls13;
            _alpn = [.. tls.Alpn.Select(p => p == ListenerTlsConfig.H2 ? SslApplicationProtocol.Http2 : SslApplicationProtocol.Http11)];
            if (tls.ClientAuth.Ca is { } ca)
            {
                try
                {
                    _clientCas = new X509Certificate2Collection();
                    _clientCas.ImportFromPemFile(ca);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
                {
                    // It parsed when the configuration was loaded and has broken since: no client
                    // certificate verifies (client_certificate_rejected) until a reload reads it again.
                    _clientCas = null;
                }
            }
        }

        public ListenerTlsConfig Tls { get; }

        public long Generation { get; }

        public SniSelector Selector { get; }

        public SslServerAuthenticationOptions Options(LoadedCertificate certificate, ClientCertificateSeen client) => new()
        {
            ServerCertificateContext = certificate.Context,
            EnabledSslProtocols = _protocols,
            ApplicationProtocols = _alpn,
            ClientCertificateRequired = Tls.ClientAuth.Mode != ClientAuthConfig.NoneMode,
            RemoteCertificateValidationCallback = Tls.ClientAuth.Mode == ClientAuthConfig.NoneMode ? null : (sender, cert, chain, errors) =>
            {
                client.Sent = cert is not null;
                return ValidateClient(cert, chain);
            },
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
        };

        /// <summary>
        /// A client certificate is accepted when it chains to one of <c>client_auth.ca</c>'s CAs
        /// (and none is needed in <c>optional</c> mode); one that is sent and does not verify
        /// fails the handshake in both modes, as nginx's <c>ssl_verify_client on|optional</c>.
        /// </summary>
        private bool ValidateClient(X509Certificate? certificate, X509Chain? chain)
        {
            if (certificate is null)
            {
                return Tls.ClientAuth.Mode == ClientAuthConfig.OptionalMode;
            }
            if (_clientCas is null)
            {
                return false;
            }
            using var verify = new X509Chain();
            verify.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            verify.ChainPolicy.CustomTrustStore.AddRange(_clientCas);
            verify.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            if (chain is not null)
            {
                foreach (var element in chain.ChainElements)
                {
                    verify.ChainPolicy.ExtraStore.Add(element.Certificate);
                }
            }
            var leaf = certificate as X509Certificate2;
            var owned = leaf is null ? new X509Certificate2(certificate) : null;
            try
            {
                return verify.Build(leaf ?? owned!);
            }
            finally
            {
                owned?.Dispose();
            }
        }
    }
}
