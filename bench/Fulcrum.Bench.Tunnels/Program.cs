using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

// Memory per idle tunnel: a WebSocket echo backend in this process, the fulcrum binary in front
// of it as its own process, N WebSockets opened through it (each echoes once, then stays idle),
// and Fulcrum's resident memory before and after. Bounded: it opens N sockets, waits, closes
// them and stops what it started. Usage: COUNT [http1|http2]
var count = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 10_000;
var http2 = args.Length > 1 && args[1] == "http2";
var fulcrumDll = Path.Combine(AppContext.BaseDirectory, "fulcrum.dll");

var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
builder.Logging.SetMinimumLevel(LogLevel.Critical);
builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http1));
var backend = builder.Build();
backend.UseWebSockets();
backend.Run(async context =>
{
    using var socket = await context.WebSockets.AcceptWebSocketAsync();
    var buffer = new byte[256];
    try
    {
        while (true)
        {
            var received = await socket.ReceiveAsync(buffer, CancellationToken.None);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                return;
            }
            await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, CancellationToken.None);
        }
    }
    catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException)
    {
    }
});
await backend.StartAsync();
var backendPort = new Uri(backend.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;

var work = Directory.CreateTempSubdirectory("fulcrum-tunnels-");
var port = FreePort();
var adminPort = FreePort();
var config = Path.Combine(work.FullName, "fulcrum.yaml");
await File.WriteAllTextAsync(config, $"""
    listeners:
      - name: web
        address: 127.0.0.1:{port}
        protocol: {(http2 ? "h2c" : "http")}
    routes:
      - name: ws
        pool: ws
    pools:
      - name: ws
        balancing: least_requests
        backends: [ "127.0.0.1:{backendPort}" ]
    admin: {"{"} address: 127.0.0.1:{adminPort} {"}"}
    access_log: {"{"} enabled: false {"}"}
    """);
var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
info.ArgumentList.Add(fulcrumDll);
info.ArgumentList.Add("run");
info.ArgumentList.Add("--config");
info.ArgumentList.Add(config);
using var fulcrum = Process.Start(info)!;
fulcrum.OutputDataReceived += (_, _) => { };
fulcrum.ErrorDataReceived += (_, e) => { if (e.Data is { Length: > 0 } line && line.Contains("fail", StringComparison.OrdinalIgnoreCase)) { Console.Error.WriteLine($"fulcrum: {line}"); } };
fulcrum.BeginOutputReadLine();
fulcrum.BeginErrorReadLine();
using var admin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{adminPort}"), Timeout = TimeSpan.FromSeconds(5) };
var sockets = new List<ClientWebSocket>(count);
using var invoker = http2 ? new HttpMessageInvoker(new SocketsHttpHandler { UseProxy = false, EnableMultipleHttp2Connections = true }) : null;
var exit = 0;
try
{
    for (var i = 0; i < 100 && !await Ready(admin); i++)
    {
        await Task.Delay(200);
    }
    var uri = new Uri($"ws://127.0.0.1:{port}/ws");

    // Warm up (JIT, pools), then let the process settle before the baseline.
    var warm = await OpenAsync(uri, 200, invoker);
    foreach (var s in warm)
    {
        await s.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        s.Dispose();
    }
    await Task.Delay(3000);
    var before = Rss(fulcrum.Id);

    var started = Stopwatch.GetTimestamp();
    sockets.AddRange(await OpenAsync(uri, count, invoker));
    var openSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
    await Task.Delay(5000);
    var after = Rss(fulcrum.Id);
    var tunnels = await TunnelGauge(admin);

    // The idle sockets still work.
    var sample = sockets.Where((_, i) => i % Math.Max(1, count / 100) == 0).ToList();
    var alive = 0;
    foreach (var s in sample)
    {
        if (await EchoAsync(s, "still there?") == "still there?")
        {
            alive++;
        }
    }

    var perTunnel = (after - before) / (double)count;
    Console.WriteLine($"tunnels: {count} idle WebSockets over HTTP/{(http2 ? "2 (extended CONNECT)" : "1.1")}, opened in {openSeconds:F1} s; fulcrum_backend_tunnels = {tunnels}");
    Console.WriteLine($"tunnels: Fulcrum RSS {before / 1048576.0:F1} MiB before, {after / 1048576.0:F1} MiB after: {perTunnel / 1024:F1} KiB per idle tunnel");
    Console.WriteLine($"tunnels: {alive}/{sample.Count} sampled sockets still echo");
    if (tunnels != count || alive != sample.Count)
    {
        exit = 1;
    }
}
finally
{
    foreach (var s in sockets)
    {
        s.Abort();
        s.Dispose();
    }
    if (!fulcrum.HasExited)
    {
        fulcrum.Kill();
        await fulcrum.WaitForExitAsync();
    }
    await backend.StopAsync();
    work.Delete(recursive: true);
}
return exit;

static async Task<List<ClientWebSocket>> OpenAsync(Uri uri, int count, HttpMessageInvoker? http2)
{
    var sockets = new ClientWebSocket[count];
    var next = -1;
    var workers = Enumerable.Range(0, 32).Select(async _ =>
    {
        int i;
        while ((i = Interlocked.Increment(ref next)) < count)
        {
            var socket = new ClientWebSocket();
            socket.Options.KeepAliveInterval = TimeSpan.Zero; // idle means idle: no pings
            if (http2 is not null)
            {
                socket.Options.HttpVersion = HttpVersion.Version20;
                socket.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
                await socket.ConnectAsync(uri, http2, CancellationToken.None);
            }
            else
            {
                await socket.ConnectAsync(uri, CancellationToken.None);
            }
            if (await EchoAsync(socket, "hi") != "hi")
            {
                throw new InvalidOperationException("the echo did not come back");
            }
            sockets[i] = socket;
        }
    });
    await Task.WhenAll(workers);
    return [.. sockets];
}

static async Task<string> EchoAsync(ClientWebSocket socket, string text)
{
    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
    await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, timeout.Token);
    var buffer = new byte[256];
    var received = await socket.ReceiveAsync(buffer, timeout.Token);
    return Encoding.UTF8.GetString(buffer, 0, received.Count);
}

static async Task<bool> Ready(HttpClient admin)
{
    try
    {
        using var response = await admin.GetAsync("/readyz");
        return response.IsSuccessStatusCode;
    }
    catch (HttpRequestException)
    {
        return false;
    }
}

static async Task<long> TunnelGauge(HttpClient admin)
{
    var text = await admin.GetStringAsync("/metrics");
    return text.Split('\n').Where(l => l.StartsWith("fulcrum_backend_tunnels{", StringComparison.Ordinal))
        .Sum(l => long.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
}

static long Rss(int pid)
{
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
    {
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
        {
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
    }
    throw new InvalidOperationException("no VmRSS");
}

static int FreePort()
{
    using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}
