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

namespace Fulcrum.Conformance;

/// <summary>What the backend made of one request it received from Fulcrum.</summary>
internal sealed record Received(string Method, string Target, string? ContentLength, string? TransferEncoding, byte[] Body);

/// <summary>A strict Kestrel backend that records every request exactly as it framed it.</summary>
internal sealed class RecordingBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private RecordingBackend(WebApplication app) => _app = app;

    public ConcurrentQueue<Received> Requests { get; } = new();

    public int Port { get; private set; }

    public static async Task<RecordingBackend> StartAsync()
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            // A tolerant backend: obs-text header values (RFC 9110 §5.5) are accepted, as nginx does.
            k.RequestHeaderEncodingSelector = static _ => System.Text.Encoding.Latin1;
            k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        var backend = new RecordingBackend(app);
        app.Run(async context =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            var r = context.Request;
            backend.Requests.Enqueue(new Received(r.Method, r.Path + r.QueryString, r.Headers.ContentLength?.ToString(System.Globalization.CultureInfo.InvariantCulture), r.Headers.TransferEncoding.Count == 0 ? null : r.Headers.TransferEncoding.ToString(), body.ToArray()));
            await context.Response.WriteAsync("backend saw " + r.Path);
        });
        await app.StartAsync();
        backend.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        return backend;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
