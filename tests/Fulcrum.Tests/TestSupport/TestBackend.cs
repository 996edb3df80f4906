using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Tests.TestSupport;

/// <summary>What a test backend saw of one request.</summary>
public sealed record SeenRequest(string Method, string PathAndQuery, IReadOnlyDictionary<string, string> Headers, string Protocol);

/// <summary>
/// A real Kestrel backend on 127.0.0.1, port 0. It records every request it gets; by default it
/// answers 200 with its name, and a test may give it any handler.
/// </summary>
public sealed class TestBackend : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<SeenRequest> _seen = new();
    private int _count;

    private TestBackend(string name, WebApplication app)
    {
        Name = name;
        _app = app;
    }

    public string Name { get; }

    public int Port { get; private set; }

    public string Address => $"127.0.0.1:{Port}";

    public int Count => Volatile.Read(ref _count);

    public IReadOnlyCollection<SeenRequest> Seen => _seen;

    public SeenRequest Last => _seen.Last();

    /// <param name="name">What it answers by default.</param>
    /// <param name="handler">Its answer; by default its name.</param>
    /// <param name="port">0: any free port.</param>
    /// <param name="latin1Headers">Header values as Latin-1 both ways.</param>
    /// <param name="tls">Serve HTTPS with this certificate (and its key).</param>
    /// <param name="clientCertificate">With <paramref name="tls"/>: ask for a client certificate and record its subject in the X-Seen-Client-Cert request header seen.</param>
    public static async Task<TestBackend> StartAsync(string name = "backend", RequestDelegate? handler = null, int port = 0, bool latin1Headers = false,
        System.Security.Cryptography.X509Certificates.X509Certificate2? tls = null, bool clientCertificate = false)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null;
            if (latin1Headers)
            {
                k.RequestHeaderEncodingSelector = static _ => System.Text.Encoding.Latin1;
                k.ResponseHeaderEncodingSelector = static _ => System.Text.Encoding.Latin1;
            }
            k.Listen(IPAddress.Loopback, port, l =>
            {
                l.Protocols = HttpProtocols.Http1;
                if (tls is not null)
                {
                    l.UseHttps(new Microsoft.AspNetCore.Server.Kestrel.Https.HttpsConnectionAdapterOptions
                    {
                        ServerCertificate = tls,
                        ClientCertificateMode = clientCertificate ? Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.RequireCertificate : Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.NoCertificate,
                        ClientCertificateValidation = (_, _, _) => true,
                    });
                }
            });
        });
        var app = builder.Build();
        var backend = new TestBackend(name, app);
        handler ??= async context => await context.Response.WriteAsync(name);
        app.UseWebSockets();
        app.Run(async context =>
        {
            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var h in context.Request.Headers)
            {
                headers[h.Key] = h.Value.ToString();
            }
            if (context.Connection.ClientCertificate is { } peer)
            {
                headers["X-Seen-Client-Cert"] = peer.Subject;
            }
            backend._seen.Enqueue(new SeenRequest(context.Request.Method, context.Request.Path + context.Request.QueryString, headers, context.Request.Protocol));
            Interlocked.Increment(ref backend._count);
            await handler(context);
        });
        await app.StartAsync();
        backend.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        return backend;
    }

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await _app.StopAsync(stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
    }
}
