using System.Text.Json;
using Fulcrum.Configuration;

namespace Fulcrum.Admin;

/// <summary>
/// The effective configuration as JSON in the file's own vocabulary (the same keys, durations
/// written <c>5s</c>, addresses <c>host:port</c>) with every default filled in, like
/// <c>nginx -T</c>. Admin tokens never appear: only the path of the file that holds them.
/// </summary>
internal static class ConfigDocument
{
    public static void Write(Utf8JsonWriter json, FulcrumConfig config)
    {
        json.WriteStartObject();
        if (config.SourcePath is { } source)
        {
            json.WriteString("file", source);
        }
        json.WriteStartArray("listeners");
        foreach (var l in config.Listeners)
        {
            json.WriteStartObject();
            json.WriteString("name", l.Name);
            json.WriteString("address", l.Address.ToString());
            json.WriteString("protocol", l.Protocol);
            json.WriteEndObject();
        }
        json.WriteEndArray();

        json.WriteStartArray("routes");
        foreach (var r in config.Routes)
        {
            json.WriteStartObject();
            json.WriteString("name", r.Name);
            json.WriteStartObject("match");
            WriteIf(json, "host", r.Match.Host);
            WriteIf(json, "path_prefix", r.Match.PathPrefix);
            WriteIf(json, "path", r.Match.Path);
            if (r.Match.Methods.Count > 0)
            {
                json.WriteStartArray("methods");
                foreach (var m in r.Match.Methods)
                {
                    json.WriteStringValue(m);
                }
                json.WriteEndArray();
            }
            if (r.Match.Headers.Count > 0)
            {
                json.WriteStartObject("headers");
                foreach (var h in r.Match.Headers)
                {
                    json.WriteString(h.Name, h.Value ?? "");
                }
                json.WriteEndObject();
            }
            json.WriteEndObject();
            json.WriteString("pool", r.Pool);
            var pool = config.Pools.FirstOrDefault(p => p.Name == r.Pool);
            var retry = ResolvedRetry.Resolve(r.Retries, pool?.Retries ?? RetryConfig.Unset);
            json.WriteStartObject("retries");
            json.WriteNumber("attempts", retry.Attempts);
            json.WriteStartArray("on");
            foreach (var on in retry.On.Order(StringComparer.Ordinal))
            {
                json.WriteStringValue(on);
            }
            foreach (var status in retry.OnStatus.Order())
            {
                json.WriteNumberValue(status);
            }
            json.WriteEndArray();
            if (retry.PerTryTimeout is { } perTry)
            {
                json.WriteString("per_try_timeout", Duration.Format(perTry));
            }
            json.WriteString("idempotency_header", retry.IdempotencyHeader);
            json.WriteString("max_body", Size.Format(retry.MaxBody));
            json.WriteEndObject();
            var t = Routing.ResolvedTimeouts.Resolve(r.Timeouts, pool?.Timeouts ?? TimeoutsConfig.Unset);
            json.WriteStartObject("timeouts");
            json.WriteString("connect", Duration.Format(t.Connect));
            json.WriteString("response", Duration.Format(t.Response));
            json.WriteString("idle", Duration.Format(t.Idle));
            json.WriteString("tunnel_idle", Duration.Format(t.TunnelIdle));
            if (t.TunnelMax is { } tunnelMax)
            {
                json.WriteString("tunnel_max", Duration.Format(tunnelMax));
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        json.WriteEndArray();

        json.WriteStartArray("pools");
        foreach (var p in config.Pools)
        {
            json.WriteStartObject();
            json.WriteString("name", p.Name);
            json.WriteString("balancing", p.Balancing);
            json.WriteString("host_header", p.HostHeader == HostHeaderMode.Backend ? "backend" : "preserve");
            json.WriteString("slow_start", Duration.Format(p.SlowStart));
            json.WriteString("when_none_healthy", p.WhenNoneHealthy == NoneHealthyMode.RouteAnyway ? "route_anyway" : "fail");
            if (p.DrainTimeout is { } drain)
            {
                json.WriteString("drain_timeout", Duration.Format(drain));
            }
            json.WriteStartObject("health");
            if (p.Health.Active is { } a)
            {
                json.WriteStartObject("active");
                json.WriteString("type", a.Type == ProbeType.Tcp ? "tcp" : "http");
                json.WriteString("path", a.Path);
                json.WriteString("method", a.Method);
                WriteIf(json, "host", a.Host);
                json.WriteString("expect_status", a.ExpectedText);
                WriteIf(json, "expect_body", a.ExpectBody);
                if (a.Port is { } port)
                {
                    json.WriteNumber("port", port);
                }
                json.WriteString("interval", Duration.Format(a.Interval));
                json.WriteString("fast_interval", Duration.Format(a.FastInterval));
                json.WriteString("timeout", Duration.Format(a.Timeout));
                json.WriteNumber("healthy_after", a.HealthyAfter);
                json.WriteNumber("unhealthy_after", a.UnhealthyAfter);
                json.WriteString("jitter", Duration.Format(a.Jitter));
                json.WriteEndObject();
            }
            var s = p.Health.Passive;
            json.WriteStartObject("passive");
            json.WriteBoolean("enabled", s.Enabled);
            json.WriteNumber("consecutive_failures", s.ConsecutiveFailures);
            json.WriteNumber("consecutive_5xx", s.Consecutive5xx);
            json.WriteString("failure_statuses", string.Join(", ", s.FailureStatuses));
            json.WriteString("ejection", Duration.Format(s.Ejection));
            json.WriteString("max_ejection", Duration.Format(s.MaxEjection));
            json.WriteNumber("max_ejected_percent", s.MaxEjectedPercent);
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteStartObject("limits");
            json.WriteNumber("max_requests", p.Limits.MaxRequests);
            json.WriteNumber("max_connections", p.Limits.MaxConnections);
            json.WriteNumber("max_pending", p.Limits.MaxPending);
            json.WriteString("queue_timeout", Duration.Format(p.Limits.QueueTimeout));
            json.WriteEndObject();
            json.WriteStartObject("retry_budget");
            json.WriteNumber("percent", p.RetryBudget.Percent);
            json.WriteNumber("min_concurrent", p.RetryBudget.MinConcurrent);
            json.WriteEndObject();
            json.WriteStartArray("backends");
            foreach (var b in p.Backends)
            {
                json.WriteStartObject();
                json.WriteString("address", b.Address);
                json.WriteNumber("weight", b.Weight);
                WriteIf(json, "name", b.Name);
                if (b.MaxRequests > 0)
                {
                    json.WriteNumber("max_requests", b.MaxRequests);
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();

        if (config.Admin is { } admin)
        {
            json.WriteStartObject("admin");
            json.WriteString("address", admin.Address.ToString());
            WriteIf(json, "token_file", admin.TokenFile);
            json.WriteEndObject();
        }
        json.WriteStartObject("access_log");
        json.WriteBoolean("enabled", config.AccessLog.Enabled);
        json.WriteString("path", config.AccessLog.Path);
        json.WriteString("format", config.AccessLog.Format);
        json.WriteEndObject();
        WriteIf(json, "state_file", config.EffectiveStateFile);
        json.WriteStartObject("shutdown");
        json.WriteString("delay", Duration.Format(config.Shutdown.Delay));
        json.WriteString("drain_timeout", Duration.Format(config.Shutdown.DrainTimeout));
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void WriteIf(Utf8JsonWriter json, string name, string? value)
    {
        if (value is not null)
        {
            json.WriteString(name, value);
        }
    }
}
