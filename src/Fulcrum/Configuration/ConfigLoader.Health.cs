using YamlDotNet.RepresentationModel;

namespace Fulcrum.Configuration;

public static partial class ConfigLoader
{
    /// <summary>Reads <c>health.active</c> and <c>health.passive</c> of a pool.</summary>
    private static class HealthReader
    {
        public static HealthConfig Read(YamlMap pool)
        {
            var health = pool.Map("health", HealthKeys);
            if (health is null)
            {
                return HealthConfig.Default;
            }
            return new HealthConfig(ReadActive(health), ReadPassive(health));
        }

        private static ActiveHealthConfig? ReadActive(YamlMap health)
        {
            if (!health.Has("active"))
            {
                return null;
            }
            var map = health.Map("active", ActiveKeys);
            var type = map?.OneOf("type", ProbeTypes) == "tcp" ? ProbeType.Tcp : ProbeType.Http;
            var path = map?.String("path") ?? "/";
            if (!path.StartsWith('/'))
            {
                map!.Error(map.Value("path")!, $"{map.Describe("path")}: '{path}' must start with '/'");
            }
            var method = (map?.String("method") ?? "GET").ToUpperInvariant();
            if (!ConfigValidator.IsToken(method))
            {
                map!.Error(map.Value("method")!, $"{map.Describe("method")}: '{method}' is not an HTTP method");
            }
            var interval = map?.Duration("interval") ?? ActiveHealthConfig.DefaultInterval;
            var fast = map?.Duration("fast_interval") ?? (interval < TimeSpan.FromSeconds(1) ? interval : TimeSpan.FromSeconds(1));
            return new ActiveHealthConfig(
                type,
                path,
                method,
                map?.String("host") is { Length: > 0 } host ? host : null,
                map is null ? ActiveHealthConfig.DefaultExpectStatus : ReadStatuses(map, "expect_status", ActiveHealthConfig.DefaultExpectStatus),
                map?.String("expect_body") is { Length: > 0 } body ? body : null,
                map?.Int("port", 1, 65535),
                interval,
                fast,
                map?.Duration("timeout") ?? ActiveHealthConfig.DefaultTimeout,
                map?.Int("healthy_after", 1, 100) ?? ActiveHealthConfig.DefaultHealthyAfter,
                map?.Int("unhealthy_after", 1, 100) ?? ActiveHealthConfig.DefaultUnhealthyAfter,
                map?.Duration("jitter", allowZero: true) ?? interval / 10);
        }

        private static PassiveHealthConfig ReadPassive(YamlMap health)
        {
            var map = health.Map("passive", PassiveKeys);
            if (map is null)
            {
                return PassiveHealthConfig.Default;
            }
            var d = PassiveHealthConfig.Default;
            var statuses = ReadStatuses(map, "failure_statuses", new(d.FailureStatuses.Select(s => new StatusRange(s, s))));
            return new PassiveHealthConfig(
                map.Bool("enabled") ?? true,
                map.Int("consecutive_failures", 1, 1000) ?? d.ConsecutiveFailures,
                map.Int("consecutive_5xx", 1, 1000) ?? d.Consecutive5xx,
                new(statuses.SelectMany(r => Enumerable.Range(r.From, r.To - r.From + 1))),
                map.Duration("ejection") ?? d.Ejection,
                map.Duration("max_ejection") ?? d.MaxEjection,
                map.Int("max_ejected_percent", 0, 100) ?? d.MaxEjectedPercent);
        }

        /// <summary>Statuses written as <c>200-399</c>, <c>[200, 204]</c>, <c>"200,204,300-399"</c>.</summary>
        private static EquatableList<StatusRange> ReadStatuses(YamlMap map, string key, EquatableList<StatusRange> fallback)
        {
            if (!map.Has(key))
            {
                return fallback;
            }
            var ranges = new List<StatusRange>();
            foreach (var item in map.Strings(key))
            {
                foreach (var part in item.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    var dash = part.IndexOf('-', StringComparison.Ordinal);
                    var fromText = dash < 0 ? part : part[..dash];
                    var toText = dash < 0 ? part : part[(dash + 1)..];
                    if (!int.TryParse(fromText.Trim(), out var from) || !int.TryParse(toText.Trim(), out var to) || from < 100 || to > 599 || from > to)
                    {
                        map.Error(map.Value(key)!, $"{map.Describe(key)}: '{part}' is not a status or a range of statuses like 200-399");
                        continue;
                    }
                    ranges.Add(new StatusRange(from, to));
                }
            }
            return ranges.Count == 0 ? fallback : new(ranges);
        }
    }
}
