using System.Net;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

/// <summary>
/// One backend of the soak: GET answers its name, POST its body's length, /sse a stream of
/// events, /ws a WebSocket echo, /health 200. It can be killed (stopped with a 1 s grace, as a
/// deploy's SIGTERM would) and started again on the same port, and made slow.
/// </summary>
internal sealed class SoakBackend(string name, int port)
{
    private WebApplication? _app;

    public string Name { get; } = name;

    public int Port { get; } = port;

    /// <summary>Added to every GET and POST while set.</summary>
    public volatile int DelayMs;

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null;
            k.Listen(IPAddress.Loopback, Port, l => l.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        app.UseWebSockets();
        app.Run(HandleAsync);
        await app.StartAsync();
        _app = app;
    }

    public async Task StopAsync()
    {
        var app = _app;
        _app = null;
        if (app is not null)
        {
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await app.StopAsync(grace.Token);
            await app.DisposeAsync();
        }
    }

    private async Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value ?? "/";
        if (path == "/health")
        {
            await context.Response.WriteAsync("ok");
            return;
        }
        if (context.WebSockets.IsWebSocketRequest)
        {
            await EchoAsync(context);
            return;
        }
        if (path == "/sse")
        {
            context.Response.ContentType = "text/event-stream";
            for (var i = 0; i < 20 && !context.RequestAborted.IsCancellationRequested; i++)
            {
                await context.Response.WriteAsync($"id: {i}\ndata: {Name} {i}\n\n", context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
                await Task.Delay(100, context.RequestAborted);
            }
            await context.Response.WriteAsync("event: end\ndata: done\n\n", context.RequestAborted);
            return;
        }
        if (DelayMs > 0)
        {
            await Task.Delay(DelayMs, context.RequestAborted);
        }
        if (HttpMethods.IsPost(context.Request.Method))
        {
            var buffer = new byte[16 * 1024];
            long total = 0;
            int n;
            while ((n = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0)
            {
                total += n;
            }
            await context.Response.WriteAsync(total.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return;
        }
        await context.Response.WriteAsync(Name);
    }

    private static async Task EchoAsync(HttpContext context)
    {
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, context.RequestAborted);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                    return;
                }
                await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, context.RequestAborted);
            }
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException)
        {
        }
    }

    public static string Text(byte[] bytes, int count) => Encoding.UTF8.GetString(bytes, 0, count);
}
