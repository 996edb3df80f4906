using System.Diagnostics;
using System.Globalization;
using System.Text;
using Fulcrum.Configuration;
using Fulcrum.Hosting;
using Microsoft.Extensions.Logging;

// Reload apply time: Fulcrum in this process with a configuration of POOLS pools x BACKENDS
// backends (one route each, active checks every 30 s against ports that refuse), reloaded RELOADS
// times with a few changes each time (weights, one backend's address, one route), first by
// calling the reload directly, then by editing the file and letting the watcher find it.
var pools = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 100;
var backends = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10;
var reloads = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 50;

var dir = Directory.CreateTempSubdirectory("fulcrum-reload-bench-");
var path = Path.Combine(dir.FullName, "fulcrum.yaml");
string Yaml(int variant)
{
    var text = new StringBuilder();
    text.Append("listeners: [{ name: web, address: 127.0.0.1:0 }]\nroutes:\n");
    for (var p = 0; p < pools; p++)
    {
        var prefix = p == 0 && variant % 2 == 1 ? "/moved0/" : $"/p{p}/";
        text.Append(CultureInfo.InvariantCulture, $"  - {{ name: r{p}, match: {{ path_prefix: {prefix} }}, pool: pool{p} }}\n");
    }
    text.Append("pools:\n");
    for (var p = 0; p < pools; p++)
    {
        text.Append(CultureInfo.InvariantCulture, $"  - name: pool{p}\n    balancing: least_requests\n    health: {{ active: {{ path: /health, interval: 30s }} }}\n    backends:\n");
        for (var b = 0; b < backends; b++)
        {
            // Each reload changes some weights, and one backend of pool 1 changes address.
            var weight = b == 0 ? 1 + (variant % 3) : 1;
            var port = p == 1 && b == 0 ? 1 + (variant % 2) : 10 + b;
            text.Append(CultureInfo.InvariantCulture, $"      - {{ address: 127.0.0.{1 + p % 200}:{port}, weight: {weight} }}\n");
        }
    }
    return text.ToString();
}

File.WriteAllText(path, Yaml(0));
var config = ConfigLoader.LoadFile(path);
if (!config.Success)
{
    Console.Error.WriteLine(string.Join("\n", config.Errors));
    return 1;
}
await using var server = await FulcrumServer.StartAsync(config.Config!, new FulcrumServerOptions { LogLevel = LogLevel.Error });

var load = new List<double>();
var apply = new List<double>();
for (var i = 1; i <= reloads; i++)
{
    File.WriteAllText(path, Yaml(i));
    var result = await server.ReloadAsync("bench");
    if (!result.Success)
    {
        Console.Error.WriteLine(string.Join("\n", result.Errors));
        return 1;
    }
    load.Add(result.LoadMs);
    apply.Add(result.ApplyMs);
}
await Task.Delay(1000); // let the watcher's look at the last write pass

// Through the watcher: from the file being replaced to the new snapshot serving.
var watched = new List<double>();
for (var i = reloads + 1; i <= reloads + 10; i++)
{
    var before = server.Runtime.Current;
    var temp = path + ".tmp";
    File.WriteAllText(temp, Yaml(i));
    var started = Stopwatch.GetTimestamp();
    File.Move(temp, path, overwrite: true);
    while (ReferenceEquals(server.Runtime.Current, before))
    {
        await Task.Delay(1);
    }
    watched.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    await Task.Delay(500);
}

static string Stats(List<double> xs)
{
    var sorted = xs.Order().ToList();
    return string.Create(CultureInfo.InvariantCulture, $"median {sorted[sorted.Count / 2]:0.0} ms, p95 {sorted[(int)(sorted.Count * 0.95)]:0.0} ms, max {sorted[^1]:0.0} ms");
}
Console.WriteLine($"reload: {pools} pools x {backends} backends, {reloads} reloads");
Console.WriteLine($"reload: read + parse + validate: {Stats(load)}");
Console.WriteLine($"reload: apply (diff, new snapshot serving): {Stats(apply)}");
Console.WriteLine($"reload: load + apply: {Stats([.. load.Zip(apply, (a, b) => a + b)])}");
Console.WriteLine($"reload: file replaced -> new snapshot serving, through the watcher ({ConfigWatcherDebounceMs()} ms debounce included): {Stats(watched)}");
dir.Delete(recursive: true);
return 0;

static int ConfigWatcherDebounceMs() => 300;
