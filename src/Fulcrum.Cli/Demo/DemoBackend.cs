using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Cli.Demo;

/// <summary>
/// A small backend for <c>fulcrum demo</c>: it says who it is at <c>/</c>, answers
/// <c>/health/ready</c>, has a slow endpoint (<c>/slow?ms=2000</c>) and a server-sent events
/// stream (<c>/events</c>).
/// </summary>
internal sealed class DemoBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private DemoBackend(string name, WebApplication app)
    {
        Name = name;
        _app = app;
    }

    public string Name { get; }

    public int Port { get; private set; }

    public static async Task<DemoBackend> StartAsync(string name, int port = 0)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        var backend = new DemoBackend(name, app);
        app.Run(backend.HandleAsync);
        await app.StartAsync().ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        backend.Port = new Uri(address).Port;
        return backend;
    }

    private async Task HandleAsync(HttpContext context)
    {
        var response = context.Response;
        var path = context.Request.Path.Value ?? "/";
        var who = $"{Name} (127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)})";
        response.Headers["X-Backend"] = Name;
        switch (path)
        {
            case "/health/ready":
                await response.WriteAsync("ready\n").ConfigureAwait(false);
                return;
            case "/slow":
                var ms = int.TryParse(context.Request.Query["ms"], CultureInfo.InvariantCulture, out var v) ? Math.Clamp(v, 0, 120_000) : 2000;
                await Task.Delay(ms, context.RequestAborted).ConfigureAwait(false);
                await response.WriteAsync($"{who} answered after {ms} ms\n").ConfigureAwait(false);
                return;
            case "/events":
                response.ContentType = "text/event-stream";
                response.Headers.CacheControl = "no-cache";
                for (var i = 1; i <= 10 && !context.RequestAborted.IsCancellationRequested; i++)
                {
                    await response.WriteAsync($"id: {i}\nevent: tick\ndata: {who} event {i} of 10 at {DateTimeOffset.UtcNow:HH:mm:ss.fff}\n\n").ConfigureAwait(false);
                    await response.Body.FlushAsync().ConfigureAwait(false);
                    await Task.Delay(1000, context.RequestAborted).ConfigureAwait(false);
                }
                return;
            default:
                await response.WriteAsync($"Hello from {who}\nYou asked for {context.Request.Method} {path}{context.Request.QueryString}\nX-Forwarded-For: {context.Request.Headers["X-Forwarded-For"]}\nX-Request-Id: {context.Request.Headers["X-Request-Id"]}\n").ConfigureAwait(false);
                return;
        }
    }

    public ValueTask DisposeAsync() => _app.DisposeAsync();
}
