using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text.RegularExpressions;
using Fulcrum.Configuration;
using Fulcrum.Hosting;
using Microsoft.Extensions.Logging;

// Allocations per proxied request: Fulcrum runs in this process (nothing else here allocates
// while wrk drives it), in front of the backends bench/alloc.sh starts, with every feature on
// (metrics, a JSON access log to a file, passive health). The managed bytes allocated between
// the start and the end of a wrk run, divided by the requests wrk completed.
// Usage: PORT BACKEND1 BACKEND2 [CONNECTIONS] [SECONDS] [off]
// With FULCRUM_ALLOC_TYPES=1 it also prints which types the bytes went to, sampled from the
// runtime's AllocationTick events (one per ~100 KB allocated, naming the type that crossed it).
// As the fulcrum command runs: socket completions inline on the socket engine's thread (the CLI
// sets this before any socket opens; the runtime reads it once).
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}
var port = int.Parse(args[0], CultureInfo.InvariantCulture);
var backends = $"{args[1]}, {args[2]}";
var connections = args.Length > 3 ? args[3] : "64";
var seconds = args.Length > 4 ? args[4] : "10";
var observed = !(args.Length > 5 && args[5] == "off");
var dir = Directory.CreateTempSubdirectory("fulcrum-alloc-");
var yaml = $"""
    listeners: [{"{"} name: web, address: 127.0.0.1:{port} {"}"}]
    routes: [{"{"} name: all, pool: backends {"}"}]
    pools: [{"{"} name: backends, balancing: round_robin, backends: [{backends}] {"}"}]
    {(observed ? $"access_log: {{ path: {Path.Combine(dir.FullName, "access.log")} }}" : "access_log: { enabled: false }\nmetrics: { enabled: false }")}
    """;
var config = ConfigLoader.LoadText(yaml, "alloc.yaml");
if (!config.Success)
{
    Console.Error.WriteLine(string.Join("\n", config.Errors));
    return 1;
}
await using (var server = await FulcrumServer.StartAsync(config.Config!, new FulcrumServerOptions { LogLevel = LogLevel.Error }))
{
    Wrk(connections, "5", port); // warm up: JIT tiers, pools
    GC.Collect();
    var gen0 = GC.CollectionCount(0);
    var gen1 = GC.CollectionCount(1);
    var gen2 = GC.CollectionCount(2);
    using var sampler = Environment.GetEnvironmentVariable("FULCRUM_ALLOC_TYPES") == "1" ? new AllocationSampler() : null;
    var before = GC.GetTotalAllocatedBytes(precise: true);
    var workItems = ThreadPool.CompletedWorkItemCount;
    var requests = Wrk(connections, seconds, port);
    var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
    workItems = ThreadPool.CompletedWorkItemCount - workItems;
    sampler?.Print(requests);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"alloc: {(observed ? "metrics + access log on" : "metrics + access log off")}, {connections} connections, {requests:N0} requests: {allocated / (double)requests:N0} bytes per request; {workItems / (double)requests:N2} thread-pool work items per request; GCs gen0 {GC.CollectionCount(0) - gen0}, gen1 {GC.CollectionCount(1) - gen1}, gen2 {GC.CollectionCount(2) - gen2}"));
}
dir.Delete(recursive: true);
return 0;

static long Wrk(string connections, string seconds, int port)
{
    var info = new ProcessStartInfo("wrk", $"-t1 -c{connections} -d{seconds}s http://127.0.0.1:{port}/") { RedirectStandardOutput = true };
    using var wrk = Process.Start(info)!;
    var output = wrk.StandardOutput.ReadToEnd();
    wrk.WaitForExit();
    var match = Regex.Match(output, @"(\d+) requests in");
    return match.Success ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : throw new InvalidOperationException(output);
}

/// <summary>Bytes allocated by type, from the runtime's AllocationTick events.</summary>
internal sealed class AllocationSampler : System.Diagnostics.Tracing.EventListener
{
    private readonly Dictionary<string, long> _bytes = [];
    private readonly bool _ready;

    public AllocationSampler()
    {
        _ready = true;
        foreach (var source in EventSource.GetSources())
        {
            OnEventSourceCreated(source);
        }
    }

    protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource eventSource)
    {
        if (_ready && eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, System.Diagnostics.Tracing.EventLevel.Verbose, (System.Diagnostics.Tracing.EventKeywords)0x1); // GC keyword
        }
    }

    protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
    {
        if (e.EventName is not "GCAllocationTick_V4" and not "GCAllocationTick_V3" || e.Payload is null)
        {
            return;
        }
        var type = e.Payload[e.PayloadNames!.IndexOf("TypeName")] as string ?? "?";
        var amount = Convert.ToInt64(e.Payload[e.PayloadNames.IndexOf("AllocationAmount64")], CultureInfo.InvariantCulture);
        lock (_bytes)
        {
            _bytes[type] = _bytes.GetValueOrDefault(type) + amount;
        }
    }

    public void Print(long requests)
    {
        lock (_bytes)
        {
            foreach (var (type, bytes) in _bytes.OrderByDescending(kv => kv.Value).Take(30))
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {bytes / (double)requests,8:N0} B/request  {type}"));
            }
        }
    }
}
