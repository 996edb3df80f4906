using System.Globalization;
using System.Net;
using System.Net.WebSockets;
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
/// <c>/health/ready</c>, has a slow endpoint (<c>/slow?ms=2000</c>), a server-sent events
/// stream (<c>/events</c>), a WebSocket echo (<c>/ws</c>) and a page that talks to it
/// (<c>/websocket</c>).
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
        app.UseWebSockets();
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
            case "/ws" when context.WebSockets.IsWebSocketRequest:
                await EchoAsync(context).ConfigureAwait(false);
                return;
            case "/websocket":
                response.ContentType = "text/html; charset=utf-8";
                await response.WriteAsync(WebSocketPage.Replace("{who}", who, StringComparison.Ordinal)).ConfigureAwait(false);
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

    /// <summary>Sends every message back as it came, until the client closes.</summary>
    private static async Task EchoAsync(HttpContext context)
    {
        using var socket = await context.WebSockets.AcceptWebSocketAsync().ConfigureAwait(false);
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, context.RequestAborted).ConfigureAwait(false);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(received.CloseStatus ?? WebSocketCloseStatus.NormalClosure, received.CloseStatusDescription, CancellationToken.None).ConfigureAwait(false);
                    return;
                }
                await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, context.RequestAborted).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException)
        {
            // The client went away without a close: nothing to answer.
        }
    }

    /// <summary>A page that opens a WebSocket to <c>/ws</c> through whatever served it, and shows the echo.</summary>
    private const string WebSocketPage = """
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><title>Fulcrum demo: WebSocket</title></head>
        <body>
        <h1>WebSocket through Fulcrum</h1>
        <p>This page came from {who}.</p>
        <p>Socket: <span id="state">connecting</span></p>
        <p>Echo: <span id="echo"></span></p>
        <script>
          const scheme = location.protocol === "https:" ? "wss:" : "ws:";
          const socket = new WebSocket(scheme + "//" + location.host + "/ws");
          const state = document.getElementById("state");
          socket.onopen = () => { state.textContent = "open"; socket.send("hello from the browser"); };
          socket.onmessage = (e) => { document.getElementById("echo").textContent = e.data; };
          socket.onclose = (e) => { state.textContent = "closed (" + e.code + ")"; };
          socket.onerror = () => { state.textContent = "error"; };
        </script>
        </body>
        </html>
        """;

    public ValueTask DisposeAsync() => _app.DisposeAsync();
}
