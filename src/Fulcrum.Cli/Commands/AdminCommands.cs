using System.CommandLine;
using System.Text.Json;

namespace Fulcrum.Cli.Commands;

/// <summary>
/// The commands that talk to a running Fulcrum's admin API: status, backends, drain, disable,
/// enable, force-healthy, add-backend, remove-backend, wait-healthy, probe, events, explain, config.
/// Exit codes: 0 done; 1 refused, not found, timed out or unreachable (with one line saying why).
/// </summary>
internal static class AdminCommands
{
    private static readonly JsonSerializerOptions Pretty = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static IEnumerable<Command> Create(TextWriter output, TextWriter error)
    {
        var o = new AdminOptions();
        var pool = new Argument<string>("pool") { Description = "Pool name" };
        var backend = new Argument<string>("backend") { Description = "Backend name, or its address as written (10.0.1.10:8080)" };

        var status = o.Add(new Command("status", "Show every pool and backend with its health"));
        status.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (_, pools) = await client.GetAsync("/api/v1/pools", ct).ConfigureAwait(false);
            if (Json(o, p, output, pools))
            {
                return 0;
            }
            Table.Backends(output, pools.EnumerateArray().SelectMany(x => x.GetProperty("backends").EnumerateArray().Select(b => (x.GetProperty("name").GetString()!, b))));
            foreach (var x in pools.EnumerateArray())
            {
                var total = x.GetProperty("backends").GetArrayLength();
                var available = x.GetProperty("available").GetInt32();
                output.WriteLine($"pool {x.GetProperty("name").GetString()}: {available} of {total} backends take traffic{(x.GetProperty("failing_open").GetBoolean() ? " (failing open)" : "")}");
            }
            var (_, config) = await client.GetAsync("/api/v1/config/status", ct).ConfigureAwait(false);
            ConfigLine(output, error, config);
            return 0;
        }));

        var certs = o.Add(new Command("certs", "Show the certificates TLS listeners serve: names, days left, issuer, file, and the last reload's result"));
        certs.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (_, list) = await client.GetAsync("/api/v1/certificates", ct).ConfigureAwait(false);
            if (!Json(o, p, output, list))
            {
                Table.Certificates(output, list);
            }
            // Exit 1 when a certificate's file is refused or one expires within 14 days, for scripts and cron.
            var now = DateTimeOffset.UtcNow;
            return list.EnumerateArray().Any(c => (c.TryGetProperty("problem", out var pr) && pr.ValueKind == JsonValueKind.String)
                || (c.GetProperty("names").GetArrayLength() > 0 && c.GetProperty("not_after").GetDateTimeOffset() < now.AddDays(14))) ? 1 : 0;
        }));

        var backends = o.Add(new Command("backends", "Show the backends of one pool") { pool });
        backends.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var name = p.GetValue(pool)!;
            var (_, list) = await client.GetAsync($"/api/v1/pools/{Uri.EscapeDataString(name)}/backends", ct).ConfigureAwait(false);
            if (!Json(o, p, output, list))
            {
                Table.Backends(output, list.EnumerateArray().Select(b => (name, b)));
            }
            return 0;
        }));

        foreach (var (verb, what) in new[] { ("drain", "Stop sending new requests to a backend; those in flight finish"), ("disable", "Take a backend out of rotation"), ("enable", "Clear an admin override: the backend's health decides again"), ("force-healthy", "Keep a backend in rotation whatever its checks say") })
        {
            var reason = new Option<string?>("--reason") { Description = "Why (kept in the audit and shown in the backend's health)" };
            var ttl = new Option<string?>("--ttl") { Description = "Lift it automatically after this long (30m, 2h)" };
            var command = o.Add(new Command(verb, what) { pool, backend }, json: true);
            if (verb != "enable")
            {
                command.Options.Add(reason);
                command.Options.Add(ttl);
            }
            command.SetAction((p, ct) => Run(o, p, error, async client =>
            {
                var (_, view) = await client.PostAsync(BackendPath(p, pool, backend) + "/" + verb, new { reason = p.GetValue(reason), ttl = p.GetValue(ttl) }, ct).ConfigureAwait(false);
                if (!Json(o, p, output, view))
                {
                    output.WriteLine($"{view.GetProperty("name").GetString()}: {view.GetProperty("status").GetString()} ({view.GetProperty("reason").GetString()})");
                }
                return 0;
            }));
            yield return command;
        }

        var address = new Argument<string>("address") { Description = "host:port of the new backend" };
        var weight = new Option<int>("--weight") { Description = "Weight, 1 to 1000", DefaultValueFactory = _ => 1 };
        var backendName = new Option<string?>("--name") { Description = "A name for humans and URLs" };
        var add = o.Add(new Command("add-backend", "Register a backend at runtime: pending, probed at once") { pool, address, weight, backendName });
        add.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (code, view) = await client.PostAsync($"/api/v1/pools/{Uri.EscapeDataString(p.GetValue(pool)!)}/backends", new { address = p.GetValue(address), weight = p.GetValue(weight), name = p.GetValue(backendName) }, ct).ConfigureAwait(false);
            if (!Json(o, p, output, view))
            {
                output.WriteLine($"{view.GetProperty("name").GetString()}: {(code == 201 ? "added" : "already registered")}, {view.GetProperty("status").GetString()} ({view.GetProperty("reason").GetString()})");
            }
            return 0;
        }));

        var removeTimeout = new Option<string?>("--timeout") { Description = "How long requests in flight may take to finish (default 30s)" };
        var remove = o.Add(new Command("remove-backend", "Drain a backend, then remove it") { pool, backend, removeTimeout });
        remove.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var query = p.GetValue(removeTimeout) is { } t ? $"?timeout={Uri.EscapeDataString(t)}" : "";
            var (_, result) = await client.DeleteAsync(BackendPath(p, pool, backend) + query, ct).ConfigureAwait(false);
            if (!Json(o, p, output, result))
            {
                output.WriteLine(result.GetProperty("drained").GetBoolean()
                    ? $"{result.GetProperty("removed").GetString()}: drained and removed"
                    : $"{result.GetProperty("removed").GetString()}: removed with {result.GetProperty("in_flight_left").GetInt32()} request(s) still in flight");
            }
            return 0;
        }));

        var waitTimeout = new Option<string?>("--timeout") { Description = "How long to wait (default 30s)" };
        var wait = o.Add(new Command("wait-healthy", "Wait until a backend is healthy: exit 0, or 1 with its last reason") { pool, backend, waitTimeout });
        wait.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var timeout = p.GetValue(waitTimeout) ?? "30s";
            var (code, view) = await client.GetAsync(BackendPath(p, pool, backend) + $"?wait=healthy&timeout={Uri.EscapeDataString(timeout)}", ct).ConfigureAwait(false);
            var line = $"{view.GetProperty("name").GetString()}: {view.GetProperty("status").GetString()} ({view.GetProperty("reason").GetString()})";
            if (code == 200)
            {
                if (!Json(o, p, output, view))
                {
                    output.WriteLine(line);
                }
                return 0;
            }
            error.WriteLine($"fulcrum: not healthy after {timeout}: {line}");
            return 1;
        }));

        var probe = o.Add(new Command("probe", "Run a health check now and print its result") { pool, backend });
        probe.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (_, result) = await client.PostAsync(BackendPath(p, pool, backend) + "/probe", null, ct).ConfigureAwait(false);
            if (!Json(o, p, output, result))
            {
                var now = result.GetProperty("backend").GetProperty("status").GetString();
                if (!result.TryGetProperty("probe", out var r))
                {
                    output.WriteLine($"no probe ran (the backend was removed or Fulcrum is stopping); now {now}");
                    return 1;
                }
                output.WriteLine($"{(r.GetProperty("success").GetBoolean() ? "passed" : "failed")}: {r.GetProperty("detail").GetString()} ({r.GetProperty("latency_ms").GetDouble():0.#} ms); now {now}");
            }
            return 0;
        }));

        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing events as they happen" };
        var eventPool = new Option<string?>("--pool") { Description = "Only this pool" };
        var eventBackend = new Option<string?>("--backend") { Description = "Only this backend" };
        var since = new Option<string?>("--since") { Description = "Only events since a time or a duration ago (10m)" };
        var events = o.Add(new Command("events", "Print health changes and admin actions") { follow, eventPool, eventBackend, since });
        events.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var query = string.Join('&', new[] { ("pool", p.GetValue(eventPool)), ("backend", p.GetValue(eventBackend)), ("since", p.GetValue(since)) }
                .Where(q => q.Item2 is not null).Select(q => $"{q.Item1}={Uri.EscapeDataString(q.Item2!)}"));
            var (_, list) = await client.GetAsync("/api/v1/events" + (query.Length > 0 ? "?" + query : ""), ct).ConfigureAwait(false);
            if (!Json(o, p, output, list))
            {
                foreach (var e in list.EnumerateArray())
                {
                    output.WriteLine(EventLine(e));
                }
            }
            if (!p.GetValue(follow))
            {
                return 0;
            }
            using var stream = await client.StreamAsync("/api/v1/events/stream", ct).ConfigureAwait(false);
            using var reader = new StreamReader(stream);
            while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
            {
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    var e = JsonDocument.Parse(line[6..]).RootElement;
                    output.WriteLine(p.GetValue(o.Json) ? line[6..] : EventLine(e));
                    await output.FlushAsync(ct).ConfigureAwait(false);
                }
            }
            return 0;
        }));

        var url = new Argument<string>("url") { Description = "The request to explain, like http://api.example.com/v1/orders" };
        var method = new Option<string>("--method", "-X") { Description = "Its method", DefaultValueFactory = _ => "GET" };
        var explain = o.Add(new Command("explain", "Say which route a request takes, why, and which backend would serve it now") { url, method });
        explain.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (_, e) = await client.GetAsync($"/api/v1/explain?method={Uri.EscapeDataString(p.GetValue(method)!)}&url={Uri.EscapeDataString(p.GetValue(url)!)}", ct).ConfigureAwait(false);
            if (Json(o, p, output, e))
            {
                return 0;
            }
            output.WriteLine($"{e.GetProperty("method").GetString()} {e.GetProperty("url").GetString()}: {e.GetProperty("outcome").GetString()}");
            foreach (var r in e.GetProperty("routes").EnumerateArray())
            {
                output.WriteLine($"  {(r.GetProperty("matched").GetBoolean() ? "=>" : "  ")} route {r.GetProperty("route").GetString()}: {r.GetProperty("why").GetString()}");
            }
            if (e.TryGetProperty("backends", out var list))
            {
                foreach (var b in list.EnumerateArray())
                {
                    output.WriteLine($"     backend {b.GetProperty("name").GetString()}: {(b.GetProperty("eligible").GetBoolean() ? "eligible" : "not eligible")}, {b.GetProperty("status").GetString()} ({b.GetProperty("reason").GetString()})");
                }
            }
            if (e.TryGetProperty("would_pick", out var pick))
            {
                output.WriteLine($"  {e.GetProperty("balancing").GetString()} would pick {pick.GetString()} now");
            }
            return 0;
        }));

        var config = o.Add(new Command("config", "Print the effective configuration, defaults filled in (like nginx -T)"), json: false);
        config.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (_, c) = await client.GetAsync("/api/v1/config", ct).ConfigureAwait(false);
            output.WriteLine(JsonSerializer.Serialize(c, Pretty));
            return 0;
        }));

        var reload = o.Add(new Command("reload", "Reload the configuration file now, as SIGHUP does (exit 1 with its errors when refused)"));
        reload.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (_, r) = await client.PostAsync("/api/v1/reload", null, ct).ConfigureAwait(false);
            var success = r.GetProperty("success").GetBoolean();
            if (Json(o, p, output, r))
            {
                return success ? 0 : 1;
            }
            if (!success)
            {
                foreach (var e in r.GetProperty("errors").EnumerateArray())
                {
                    error.WriteLine(e.GetString());
                }
                error.WriteLine($"fulcrum: reload refused with {r.GetProperty("errors").GetArrayLength()} error(s); the running configuration stays");
                return 1;
            }
            output.WriteLine($"reloaded in {r.GetProperty("apply_ms").GetDouble():0.0} ms: {ChangeSummary(r.GetProperty("changes"))}");
            foreach (var section in r.GetProperty("changes").GetProperty("need_restart").EnumerateArray())
            {
                output.WriteLine($"note: '{section.GetString()}' changed; it takes effect at the next start");
            }
            return 0;
        }));

        var shutdown = o.Add(new Command("shutdown", "Stop Fulcrum gracefully, as SIGTERM does"), json: false);
        shutdown.SetAction((p, ct) => Run(o, p, error, async client =>
        {
            var (_, r) = await client.PostAsync("/api/v1/shutdown", null, ct).ConfigureAwait(false);
            output.WriteLine($"fulcrum is shutting down: accepting for {r.GetProperty("delay").GetString()} more, then requests in flight get up to {r.GetProperty("drain_timeout").GetString()}");
            return 0;
        }));
        yield return shutdown;
        yield return reload;

        yield return status;
        yield return backends;
        yield return add;
        yield return remove;
        yield return wait;
        yield return probe;
        yield return events;
        yield return explain;
        yield return config;
        yield return certs;
    }

    /// <summary>The configuration line of <c>fulcrum status</c>, and a refused reload's errors.</summary>
    private static void ConfigLine(TextWriter output, TextWriter error, JsonElement c)
    {
        var file = c.TryGetProperty("file", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : "(built in code)";
        var applied = c.GetProperty("applied_at").GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture);
        output.WriteLine($"config {file}: applied {applied}Z; {c.GetProperty("reloads").GetInt64()} reload(s), {c.GetProperty("failures").GetInt64()} refused");
        if (c.TryGetProperty("last_reload", out var last) && last.ValueKind == JsonValueKind.Object && !last.GetProperty("success").GetBoolean())
        {
            var at = last.GetProperty("at").GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture);
            output.WriteLine($"last reload ({last.GetProperty("trigger").GetString()}, {at}Z) was REFUSED; the configuration above is still in force:");
            foreach (var e in last.GetProperty("errors").EnumerateArray())
            {
                output.WriteLine($"  {e.GetString()}");
            }
        }
        _ = error;
    }

    private static string ChangeSummary(JsonElement c)
    {
        var parts = new List<string>();
        foreach (var (key, label) in new[] { ("listeners_added", "listeners added"), ("listeners_removed", "listeners removed"), ("pools_added", "pools added"), ("pools_removed", "pools removed"), ("pools_changed", "pools changed"), ("backends_added", "backends added"), ("backends_removed", "backends removed"), ("backends_updated", "backends updated") })
        {
            var items = c.GetProperty(key).EnumerateArray().Select(e => e.GetString()).ToList();
            if (items.Count > 0)
            {
                parts.Add($"{label}: {string.Join(", ", items)}");
            }
        }
        if (c.GetProperty("routes_changed").GetBoolean())
        {
            parts.Add("routes changed");
        }
        return parts.Count == 0 ? "no changes" : string.Join("; ", parts);
    }

    private static string BackendPath(ParseResult p, Argument<string> pool, Argument<string> backend) =>
        $"/api/v1/pools/{Uri.EscapeDataString(p.GetValue(pool)!)}/backends/{Uri.EscapeDataString(p.GetValue(backend)!)}";

    private static string EventLine(JsonElement e)
    {
        var at = e.GetProperty("at").GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture);
        var where = $"{e.GetProperty("pool").GetString()}/{e.GetProperty("backend").GetString()}";
        return e.GetProperty("type").GetString() == "health"
            ? $"{at}  {where}  {e.GetProperty("from").GetString()} -> {e.GetProperty("to").GetString()}  ({e.GetProperty("source").GetString()}: {e.GetProperty("reason").GetString()})"
            : $"{at}  {where}  {e.GetProperty("action").GetString()} by {e.GetProperty("by").GetString()}: {e.GetProperty("reason").GetString()}";
    }

    private static bool Json(AdminOptions o, ParseResult p, TextWriter output, JsonElement body)
    {
        if (!p.GetValue(o.Json))
        {
            return false;
        }
        output.WriteLine(JsonSerializer.Serialize(body, Pretty));
        return true;
    }

    private static async Task<int> Run(AdminOptions o, ParseResult p, TextWriter error, Func<AdminClient, Task<int>> action)
    {
        try
        {
            using var client = o.Client(p);
            return await action(client).ConfigureAwait(false);
        }
        catch (AdminException e)
        {
            error.WriteLine($"fulcrum: {e.Message}");
            return 1;
        }
        catch (IOException e)
        {
            error.WriteLine($"fulcrum: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            return 0;
        }
    }
}
