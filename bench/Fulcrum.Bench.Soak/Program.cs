using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;

// The soak and chaos bench (issue 20): mixed traffic through the fulcrum binary (GETs, POSTs with
// bodies, server-sent event streams, WebSockets) while, on a schedule, the configuration is
// rewritten, a backend is killed and restarted, one is drained and enabled again, and one turns
// slow. It reports every failure by kind, WebSockets lost, Fulcrum's memory, descriptors and
// threads, and p99 over time. Bounded: it runs DURATION seconds, then stops what it started.
// Usage: Fulcrum.Bench.Soak SECONDS [SETTLE_SECONDS] (ports 19301-19306 on 127.0.0.1)
var seconds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 600;
var settle = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 55;
// dotnet-gcdump, when given: the managed heap after a full collection at warm-up and at the end,
// which tells a leak from a heap the server GC merely keeps (RSS alone cannot).
var gcdump = args.Length > 2 ? args[2] : null;
const int ProxyPort = 19304, AdminPort = 19305;
var backends = new[] { new SoakBackend("b1", 19301), new SoakBackend("b2", 19302), new SoakBackend("b3", 19303) };
foreach (var b in backends)
{
    await b.StartAsync();
}

var work = Directory.CreateTempSubdirectory("fulcrum-soak-");
var config = Path.Combine(work.FullName, "fulcrum.yaml");
string Yaml(int version) => $$"""
    # version {{version}}
    listeners: [{ name: web, address: "127.0.0.1:{{ProxyPort}}" }]
    routes:
      - name: app
        pool: app
        timeouts: { idle: 1h, tunnel_idle: 1h }
        retries: { attempts: 2, on: [connect_failure, reset, 503] }
    pools:
      - name: app
        balancing: least_requests
        drain_timeout: 5s
        health:
          active: { path: /health, interval: 1s, timeout: 1s, healthy_after: 1, unhealthy_after: 2 }
        backends:
          - { address: "127.0.0.1:19301", name: b1, weight: {{(version % 2) + 1}} }
          - { address: "127.0.0.1:19302", name: b2 }
          - { address: "127.0.0.1:19303", name: b3 }
    admin: { address: "127.0.0.1:{{AdminPort}}" }
    access_log: { enabled: true, path: {{Path.Combine(work.FullName, "access.log")}} }
    """;
await File.WriteAllTextAsync(config, Yaml(0));
var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "fulcrum.dll"));
info.ArgumentList.Add("run");
info.ArgumentList.Add("--config");
info.ArgumentList.Add(config);
using var fulcrum = Process.Start(info)!;
var warnings = new List<string>();
fulcrum.OutputDataReceived += (_, _) => { };
fulcrum.ErrorDataReceived += (_, e) =>
{
    if (e.Data is { } line && (line.StartsWith("warn", StringComparison.Ordinal) || line.StartsWith("fail", StringComparison.Ordinal) || line.StartsWith("crit", StringComparison.Ordinal)))
    {
        lock (warnings)
        {
            warnings.Add(line);
        }
    }
};
fulcrum.BeginOutputReadLine();
fulcrum.BeginErrorReadLine();

using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) }) { BaseAddress = new Uri($"http://127.0.0.1:{ProxyPort}"), Timeout = TimeSpan.FromSeconds(30) };
using var admin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{AdminPort}") };
for (var i = 0; ; i++)
{
    try
    {
        (await http.GetAsync("/")).EnsureSuccessStatusCode();
        break;
    }
    catch (HttpRequestException) when (i < 100)
    {
        await Task.Delay(100);
    }
}
var idle = Sample(fulcrum.Id);
var tally = new Tally();
using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
var clock = Stopwatch.StartNew();

string Kind(HttpResponseMessage r) => $"{(int)r.StatusCode} {(r.Headers.TryGetValues("Fulcrum-Error", out var e) ? e.First() : "")}".Trim();
string Failure(Exception e) => e is TaskCanceledException or OperationCanceledException ? "client timeout" : e.GetType().Name + ": " + (e.InnerException?.Message ?? e.Message);

async Task GetLoopAsync()
{
    while (!stop.IsCancellationRequested)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            using var response = await http.GetAsync("/item");
            var body = await response.Content.ReadAsStringAsync();
            tally.Count(response.IsSuccessStatusCode && body.StartsWith('b') ? "get ok" : "get failed: " + Kind(response));
            tally.Latency(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        catch (Exception e) when (!stop.IsCancellationRequested)
        {
            tally.Count("get failed: " + Failure(e));
        }
        catch (Exception)
        {
        }
        await Task.Delay(5);
    }
}

async Task PostLoopAsync()
{
    var payload = new byte[32 * 1024];
    while (!stop.IsCancellationRequested)
    {
        try
        {
            using var content = new ByteArrayContent(payload);
            using var response = await http.PostAsync("/upload", content);
            var body = await response.Content.ReadAsStringAsync();
            tally.Count(response.IsSuccessStatusCode && body == "32768" ? "post ok" : "post failed: " + Kind(response));
        }
        catch (Exception e) when (!stop.IsCancellationRequested)
        {
            tally.Count("post failed: " + Failure(e));
        }
        catch (Exception)
        {
        }
        await Task.Delay(20);
    }
}

async Task SseLoopAsync()
{
    while (!stop.IsCancellationRequested)
    {
        try
        {
            using var response = await http.GetAsync("/sse", HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var events = 0;
            var ended = false;
            while (await reader.ReadLineAsync() is { } line)
            {
                events += line.StartsWith("data: b", StringComparison.Ordinal) ? 1 : 0;
                if (line == "event: end")
                {
                    ended = true;
                    break;
                }
            }
            tally.Count(ended && events == 20 ? "sse ok" : $"sse cut after {events} events");
        }
        catch (Exception e) when (!stop.IsCancellationRequested)
        {
            tally.Count("sse failed: " + Failure(e));
        }
        catch (Exception)
        {
        }
    }
}

async Task WebSocketLoopAsync()
{
    var buffer = new byte[4096];
    while (!stop.IsCancellationRequested)
    {
        using var socket = new ClientWebSocket();
        try
        {
            await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{ProxyPort}/ws"), stop.Token);
            tally.Count("ws opened");
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var text = $"message {n}";
                await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, stop.Token);
                var received = await socket.ReceiveAsync(buffer, stop.Token);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    // A backend drained or stopped: a close frame is how the client is told (1001
                    // from Fulcrum, or the backend's own); only a cut without one is a loss.
                    tally.Count($"ws closed with {(int?)socket.CloseStatus} {socket.CloseStatusDescription} (reconnected)".Replace("  ", " ", StringComparison.Ordinal));
                    break;
                }
                if (SoakBackend.Text(buffer, received.Count) != text)
                {
                    tally.Count("ws lost: echo mismatch");
                    break;
                }
                tally.Count("ws messages ok");
                await Task.Delay(500, stop.Token);
            }
        }
        catch (Exception e) when (!stop.IsCancellationRequested)
        {
            tally.Count("ws lost: " + Failure(e));
        }
        catch (Exception)
        {
        }
    }
}

async Task ChaosAsync()
{
    var version = 0;
    var step = 0;
    while (!stop.IsCancellationRequested)
    {
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(15), stop.Token);
            switch (step++ % 4)
            {
                case 0:
                    // Rewritten by rename, as editors and config managers do.
                    await File.WriteAllTextAsync(config + ".tmp", Yaml(++version));
                    File.Move(config + ".tmp", config, overwrite: true);
                    tally.Count("chaos: configuration rewritten");
                    break;
                case 1:
                    await backends[1].StopAsync();
                    tally.Count("chaos: b2 killed and restarted");
                    await Task.Delay(TimeSpan.FromSeconds(5), stop.Token);
                    await backends[1].StartAsync();
                    break;
                case 2:
                    (await admin.PostAsync("/api/v1/pools/app/backends/b3/drain", null)).Dispose();
                    tally.Count("chaos: b3 drained and enabled");
                    await Task.Delay(TimeSpan.FromSeconds(8), stop.Token);
                    (await admin.PostAsync("/api/v1/pools/app/backends/b3/enable", null)).Dispose();
                    break;
                default:
                    backends[0].DelayMs = 300;
                    tally.Count("chaos: b1 slow for 8 s");
                    await Task.Delay(TimeSpan.FromSeconds(8), stop.Token);
                    backends[0].DelayMs = 0;
                    break;
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
    backends[0].DelayMs = 0;
}

var tasks = new List<Task>();
tasks.AddRange(Enumerable.Range(0, 6).Select(_ => Task.Run(GetLoopAsync)));
tasks.AddRange(Enumerable.Range(0, 2).Select(_ => Task.Run(PostLoopAsync)));
tasks.AddRange(Enumerable.Range(0, 2).Select(_ => Task.Run(SseLoopAsync)));
tasks.AddRange(Enumerable.Range(0, 10).Select(_ => Task.Run(WebSocketLoopAsync)));
tasks.Add(Task.Run(ChaosAsync));

tasks.Add(Task.Run(async () =>
{
    // Fulcrum's resident memory at the end of each 30 s window, to tell a plateau from a leak.
    try
    {
        while (true)
        {
            await Task.Delay(TimeSpan.FromSeconds(30), stop.Token);
            tally.Memory(Sample(fulcrum.Id).RssMiB);
        }
    }
    catch (OperationCanceledException)
    {
    }
}));

var warmup = TimeSpan.FromSeconds(Math.Min(60, seconds / 5));
await Task.Delay(warmup);
var warm = Sample(fulcrum.Id);
var warmHeap = await HeapAsync(gcdump, fulcrum.Id, work.FullName, "warm");
try
{
    await Task.Delay(Timeout.Infinite, stop.Token);
}
catch (OperationCanceledException)
{
}
var loaded = Sample(fulcrum.Id);
var endHeap = await HeapAsync(gcdump, fulcrum.Id, work.FullName, "end");
await Task.WhenAll(tasks);
// Let idle upstream connections (50 s) and client connections age out before counting.
http.Dispose();
await Task.Delay(TimeSpan.FromSeconds(settle));
var settled = Sample(fulcrum.Id);
var alive = !fulcrum.HasExited;
fulcrum.Kill();
foreach (var b in backends)
{
    await b.StopAsync();
}

var report = new StringBuilder();
report.AppendLine(CultureInfo.InvariantCulture, $"## Soak, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {seconds} s");
report.AppendLine();
report.AppendLine("Traffic: 6 GET loops, 2 POST loops (32 KiB bodies), 2 SSE streams (20 events each, back to back), 10 WebSockets (a message every 500 ms). Every 15 s in turn: the configuration rewritten by rename; b2 stopped (1 s grace) and started 5 s later; b3 drained for 8 s; b1 slow (300 ms) for 8 s.");
report.AppendLine();
report.AppendLine("| outcome | count |");
report.AppendLine("| --- | --- |");
foreach (var (kind, count) in tally.All)
{
    report.AppendLine(CultureInfo.InvariantCulture, $"| {kind} | {count:N0} |");
}
var failed = tally.All.Where(c => c.Key.Contains("failed", StringComparison.Ordinal) || c.Key.Contains("cut", StringComparison.Ordinal) || c.Key.Contains("lost", StringComparison.Ordinal)).Sum(c => c.Value);
report.AppendLine();
report.AppendLine(CultureInfo.InvariantCulture, $"Failed requests, cut streams and lost WebSockets: **{failed}**. Fulcrum alive at the end: {(alive ? "yes" : "NO")}.");
report.AppendLine();
report.AppendLine("| Fulcrum | idle, before | after warm-up | end of traffic | settled after |");
report.AppendLine("| --- | --- | --- | --- | --- |");
report.AppendLine(CultureInfo.InvariantCulture, $"| resident memory, MiB | {idle.RssMiB:0.0} | {warm.RssMiB:0.0} | {loaded.RssMiB:0.0} | {settled.RssMiB:0.0} |");
report.AppendLine(CultureInfo.InvariantCulture, $"| file descriptors | {idle.Fds} | {warm.Fds} | {loaded.Fds} | {settled.Fds} |");
report.AppendLine(CultureInfo.InvariantCulture, $"| threads | {idle.Threads} | {warm.Threads} | {loaded.Threads} | {settled.Threads} |");
report.AppendLine();
report.AppendLine(CultureInfo.InvariantCulture, $"Memory growth from warm-up ({warmup.TotalSeconds:0} s) to the end of traffic: {(loaded.RssMiB / warm.RssMiB - 1) * 100:+0.0;-0.0}%.");
if (warmHeap is not null && endHeap is not null)
{
    report.AppendLine();
    report.AppendLine(CultureInfo.InvariantCulture, $"Managed heap after a full collection (dotnet-gcdump): {warmHeap.Value.Bytes / 1048576.0:0.0} MiB in {warmHeap.Value.Objects:N0} objects at warm-up, {endHeap.Value.Bytes / 1048576.0:0.0} MiB in {endHeap.Value.Objects:N0} objects at the end ({(endHeap.Value.Bytes / (double)warmHeap.Value.Bytes - 1) * 100:+0.0;-0.0}%). The largest at the end:");
    report.AppendLine();
    report.AppendLine(endHeap.Value.Top);
}
report.AppendLine();
report.AppendLine("| window (30 s) | GETs | p99 ms | Fulcrum's resident memory at its end, MiB |");
report.AppendLine("| --- | --- | --- | --- |");
foreach (var (window, count, p99, rss) in tally.Windows())
{
    report.AppendLine(CultureInfo.InvariantCulture, $"| {window * 30}-{window * 30 + 30} s | {count:N0} | {p99:0.0} | {(rss > 0 ? rss.ToString("0.0", CultureInfo.InvariantCulture) : "")} |");
}
lock (warnings)
{
    report.AppendLine();
    report.AppendLine(CultureInfo.InvariantCulture, $"Fulcrum's warnings and errors on stderr: {warnings.Count}.");
    foreach (var line in warnings.GroupBy(w => w.Length > 90 ? w[..90] : w).OrderByDescending(g => g.Count()).Take(8))
    {
        report.AppendLine(CultureInfo.InvariantCulture, $"- {line.Count()} × `{line.Key}`");
    }
}
Console.WriteLine(report.ToString());
work.Delete(recursive: true);
return failed == 0 && alive ? 0 : 1;

// The live managed heap of pid, from a gcdump (which collects first): total bytes and objects.
static async Task<(long Bytes, long Objects, string Top)?> HeapAsync(string? gcdump, int pid, string dir, string name)
{
    if (gcdump is null)
    {
        return null;
    }
    var file = Path.Combine(dir, name + ".gcdump");
    using (var collect = Process.Start(new ProcessStartInfo(gcdump, $"collect -p {pid} -o {file}") { RedirectStandardOutput = true, RedirectStandardError = true })!)
    {
        await collect.WaitForExitAsync();
    }
    var info = new ProcessStartInfo(gcdump, $"report {file}") { RedirectStandardOutput = true, RedirectStandardError = true };
    using var report = Process.Start(info)!;
    var text = await report.StandardOutput.ReadToEndAsync();
    await report.WaitForExitAsync();
    // The report's first data line: "<bytes>  GC Heap bytes", then "<count>  GC Heap objects".
    long Find(string label) => text.Split('\n').Where(l => l.Contains(label, StringComparison.Ordinal)).Select(l => long.Parse(l.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[0].Replace(",", "", StringComparison.Ordinal), CultureInfo.InvariantCulture)).FirstOrDefault();
    var bytes = Find("GC Heap bytes");
    var top = string.Join("\n", text.Split('\n').Where(l => l.Contains("  [", StringComparison.Ordinal)).Take(10).Select(l => "    " + l.Trim()));
    return bytes > 0 ? (bytes, Find("GC Heap objects"), top) : null;
}

static (double RssMiB, int Fds, int Threads) Sample(int pid)
{
    double rss = 0;
    var threads = 0;
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
    {
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
        {
            rss = double.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
        }
        else if (line.StartsWith("Threads:", StringComparison.Ordinal))
        {
            threads = int.Parse(line[8..].Trim(), CultureInfo.InvariantCulture);
        }
    }
    return (rss, Directory.GetFiles($"/proc/{pid}/fd").Length, threads);
}
