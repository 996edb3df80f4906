using Fulcrum.Balancing;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Fulcrum.Configuration;

/// <summary>The outcome of loading a configuration: a config when there were no errors, else every error found.</summary>
public sealed record ConfigLoadResult(FulcrumConfig? Config, IReadOnlyList<ConfigError> Errors, ConfigSourceMap Map)
{
    /// <summary>What is wrong but does not refuse the file, such as a certificate that has expired.</summary>
    public IReadOnlyList<ConfigError> Warnings { get; init; } = [];

    public bool Success => Config is not null && Errors.Count == 0;
}

/// <summary>
/// Loads <c>fulcrum.yaml</c>: YAML through YamlDotNet's node model (which keeps line and column),
/// bound by hand so that every unknown key, bad value and broken reference is reported at once
/// with its position, and nothing is applied unless the whole file is good.
/// </summary>
public static partial class ConfigLoader
{
    private static readonly string[] TopKeys = ["listeners", "routes", "pools", "admin", "access_log", "state_file", "shutdown", "tracing", "metrics"];
    private static readonly string[] TracingKeys = ["otlp_endpoint"];
    private static readonly string[] MetricsKeys = ["enabled"];
    private static readonly string[] ShutdownKeys = ["delay", "drain_timeout"];
    private static readonly string[] ListenerKeys = ["name", "address", "protocol", "server", "max_connections", "limits", "timeouts", "tls", "redirect_https"];
    private static readonly string[] ListenerLimitKeys = ["request_line", "headers", "header_count", "max_requests_per_connection"];
    private static readonly string[] ListenerTimeoutKeys = ["request_header", "keep_alive"];
    private static readonly string[] RouteKeys = ["name", "match", "pool", "timeouts", "retries", "hsts"];
    private static readonly string[] RetryKeys = ["attempts", "on", "per_try_timeout", "backoff", "idempotency_header", "max_body"];
    private static readonly string[] BackoffKeys = ["base", "max"];
    private static readonly string[] BudgetKeys = ["percent", "min_concurrent"];
    private static readonly string[] MatchKeys = ["host", "path_prefix", "path", "methods", "headers"];
    private static readonly string[] PoolKeys = ["name", "balancing", "backends", "timeouts", "host_header", "health", "slow_start", "when_none_healthy", "retries", "retry_budget", "limits", "drain_timeout", "tls"];
    private static readonly string[] LimitKeys = ["max_requests", "max_connections", "max_pending", "queue_timeout", "upstream_response_headers"];
    private static readonly string[] HealthKeys = ["active", "passive"];
    private static readonly string[] ActiveKeys = ["type", "path", "method", "host", "expect_status", "expect_body", "port", "interval", "fast_interval", "timeout", "healthy_after", "unhealthy_after", "jitter"];
    private static readonly string[] PassiveKeys = ["enabled", "consecutive_failures", "consecutive_5xx", "failure_statuses", "ejection", "max_ejection", "max_ejected_percent"];
    private static readonly string[] ProbeTypes = ["http", "tcp"];
    private static readonly string[] NoneHealthyModes = ["fail", "route_anyway"];
    private static readonly string[] BackendKeys = ["address", "weight", "name", "max_requests"];
    private static readonly string[] TimeoutKeys = ["connect", "response", "idle", "tunnel_idle", "tunnel_max"];
    private static readonly string[] AdminKeys = ["address", "token_file"];
    private static readonly string[] AccessLogKeys = ["enabled", "path", "format"];
    private static readonly string[] Protocols = [ListenerConfig.HttpProtocol, ListenerConfig.H2cProtocol];
    private static readonly string[] Servers = [ListenerConfig.FulcrumServer, ListenerConfig.KestrelServer];
    private static readonly string[] HostHeaderModes = ["preserve", "backend"];
    private static readonly string[] AccessLogFormats = [AccessLogConfig.JsonFormat, AccessLogConfig.CombinedFormat];

    public static ConfigLoadResult LoadFile(string path)
    {
        string text;
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
            using var reader = new StreamReader(new MemoryStream(bytes), System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
            text = reader.ReadToEnd();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var map = new ConfigSourceMap(path);
            return new ConfigLoadResult(null, [new ConfigError(path, 1, 1, $"cannot read the file: {e.Message}")], map);
        }
        var result = LoadText(text, path);
        return result.Config is null ? result : result with
        {
            Config = result.Config with { SourcePath = Path.GetFullPath(path), SourceHash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes)) },
        };
    }

    public static ConfigLoadResult LoadText(string text, string file)
    {
        var context = new ConfigReadContext(file);
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // YamlDotNet's node model throws these for shapes its parser accepted (a duplicate
            // key made through an alias, for one); they carry no position.
            context.Errors.Add(new ConfigError(file, 1, 1, $"YAML: {e.Message}"));
            return new ConfigLoadResult(null, context.Errors, context.Map);
        }
        catch (YamlException e)
        {
            var message = e.InnerException is { } inner && e.Message.Contains("Duplicate key", StringComparison.OrdinalIgnoreCase) is false
                ? $"{e.Message} ({inner.Message})"
                : e.Message;
            context.Errors.Add(new ConfigError(file, (int)e.Start.Line, (int)e.Start.Column, $"YAML syntax: {Trim(message)}"));
            return new ConfigLoadResult(null, context.Errors, context.Map);
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
        {
            context.Errors.Add(new ConfigError(file, 1, 1, "the file is empty; a configuration needs at least listeners, routes and pools"));
            return new ConfigLoadResult(null, context.Errors, context.Map);
        }
        if (stream.Documents.Count > 1)
        {
            var second = stream.Documents[1].RootNode;
            context.Error(second, "the file holds more than one YAML document ('---'); put the whole configuration in one");
        }
        if (stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            context.Error(stream.Documents[0].RootNode, "the top level must be a mapping with listeners, routes and pools");
            return new ConfigLoadResult(null, context.Errors, context.Map);
        }

        var top = new YamlMap(context, root, "", TopKeys);
        var listeners = ReadList(top, "listeners", ReadListener);
        var routes = ReadList(top, "routes", ReadRoute);
        var pools = ReadList(top, "pools", ReadPool);
        var admin = ReadAdmin(top);
        var accessLog = ReadAccessLog(top);

        var stateFile = top.String("state_file");
        var shutdownMap = top.Map("shutdown", ShutdownKeys);
        var shutdown = new ShutdownConfig(
            shutdownMap?.Duration("delay", allowZero: true) ?? ShutdownConfig.Default.Delay,
            shutdownMap?.Duration("drain_timeout", allowZero: true) ?? ShutdownConfig.Default.DrainTimeout);
        Uri? otlp = null;
        if (top.Map("tracing", TracingKeys) is { } tracing && tracing.String("otlp_endpoint") is { Length: > 0 } endpoint)
        {
            if (Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
            {
                otlp = uri;
            }
            else
            {
                tracing.Error(tracing.Value("otlp_endpoint")!, $"tracing.otlp_endpoint: '{endpoint}' is not an http(s) URL, like http://127.0.0.1:4318");
            }
        }
        var metricsEnabled = top.Map("metrics", MetricsKeys)?.Bool("enabled") ?? true;
        var config = new FulcrumConfig(new(listeners), new(routes), new(pools), admin, accessLog)
        {
            MetricsEnabled = metricsEnabled,
            OtlpEndpoint = otlp,
            StateFile = string.IsNullOrEmpty(stateFile) ? null : stateFile,
            Shutdown = shutdown,
        };
        context.Map.Set(config, "", 1, 1);
        top.Locate(config, "listeners", "listeners");
        top.Locate(config, "routes", "routes");
        top.Locate(config, "pools", "pools");

        var declared = TopKeys.Where(k => top.Value(k) is YamlSequenceNode { Children.Count: > 0 }).ToHashSet(StringComparer.Ordinal);
        context.Errors.AddRange(ConfigValidator.Validate(config, context.Map, declared));
        context.Errors.Sort((a, b) => a.Line != b.Line ? a.Line.CompareTo(b.Line) : a.Column.CompareTo(b.Column));
        return new ConfigLoadResult(context.Errors.Count == 0 ? config : null, context.Errors, context.Map) { Warnings = context.Warnings };
    }

    private static string Trim(string message)
    {
        // YamlDotNet prefixes its own "(Line: x, Col: y, ...)"; the position is already in our prefix.
        var close = message.IndexOf("): ", StringComparison.Ordinal);
        return message.StartsWith("(Line:", StringComparison.Ordinal) && close > 0 ? message[(close + 3)..] : message;
    }

    private static List<T> ReadList<T>(YamlMap parent, string key, Func<YamlMap, YamlNode, string, T?> read)
        where T : class
    {
        var result = new List<T>();
        var items = parent.Sequence(key);
        for (var i = 0; i < items.Count; i++)
        {
            var item = read(parent, items[i], $"{key}[{i}]");
            if (item is not null)
            {
                result.Add(item);
            }
        }
        return result;
    }

    private static ListenerConfig? ReadListener(YamlMap parent, YamlNode node, string path)
    {
        var map = parent.Item(node, path, ListenerKeys);
        if (map is null)
        {
            return null;
        }
        var name = map.String("name", required: true);
        var address = map.Address("address", required: true, allowPortZero: true);
        var protocol = map.OneOf("protocol", Protocols) ?? ListenerConfig.HttpProtocol;
        var server = map.OneOf("server", Servers) ?? ListenerConfig.FulcrumServer;
        if (name is null || address is null)
        {
            return null;
        }
        var limits = map.Map("limits", ListenerLimitKeys);
        var timeouts = map.Map("timeouts", ListenerTimeoutKeys);
        var defaults = ListenerLimits.Default;
        var listener = new ListenerConfig(name, address, protocol)
        {
            MaxConnections = map.Int("max_connections", 1, 10_000_000),
            Server = server,
            Limits = limits is null ? defaults : new ListenerLimits(
                (int)(limits.Size("request_line", 256, 1 << 20) ?? defaults.RequestLine),
                (int)(limits.Size("headers", 1024, 16 << 20) ?? defaults.Headers),
                limits.Int("header_count", 1, 10_000) ?? defaults.HeaderCount,
                limits.Int("max_requests_per_connection", 1, int.MaxValue)),
            Timeouts = timeouts is null ? ListenerTimeouts.Default : new ListenerTimeouts(
                timeouts.Duration("request_header") ?? ListenerTimeouts.Default.RequestHeader,
                timeouts.Duration("keep_alive") ?? ListenerTimeouts.Default.KeepAlive),
            Tls = ReadListenerTls(map, protocol),
            RedirectHttps = ReadRedirectHttps(map),
        };
        map.LocateSelf(listener);
        map.Locate(listener, "name", "name");
        map.Locate(listener, "address", "address");
        return listener;
    }

    private static RouteConfig? ReadRoute(YamlMap parent, YamlNode node, string path)
    {
        var map = parent.Item(node, path, RouteKeys);
        if (map is null)
        {
            return null;
        }
        var name = map.String("name", required: true);
        var pool = map.String("pool", required: true);
        var match = ReadMatch(map);
        var timeouts = ReadTimeouts(map);
        var retries = ReadRetries(map);
        if (name is null || pool is null || match is null)
        {
            return null;
        }
        var route = new RouteConfig(name, match, pool, timeouts) { Retries = retries, Hsts = ReadHsts(map) };
        map.LocateSelf(route);
        map.Locate(route, "name", "name");
        map.Locate(route, "pool", "pool");
        map.Locate(route, "match", "match");
        return route;
    }

    private static RouteMatchConfig? ReadMatch(YamlMap route)
    {
        var map = route.Map("match", MatchKeys);
        if (map is null)
        {
            return RouteMatchConfig.Any;
        }
        var host = map.String("host");
        var prefix = map.String("path_prefix");
        var path = map.String("path");
        var methods = map.Strings("methods");
        var headers = new List<HeaderMatchConfig>();
        // Header names are free-form, so read them from the node rather than against a key list.
        switch (map.Value("headers"))
        {
            case null or YamlScalarNode { Value: null or "" }:
                break;
            case YamlMappingNode headerNode:
                foreach (var (k, v) in headerNode.Children)
                {
                    if (k is not YamlScalarNode { Value: { Length: > 0 } headerName } || v is not YamlScalarNode headerValue)
                    {
                        map.Error(k, $"{map.Describe("headers")}: write each header as 'Name: value' (an empty value means 'present')");
                        continue;
                    }
                    headers.Add(new HeaderMatchConfig(headerName, string.IsNullOrEmpty(headerValue.Value) ? null : headerValue.Value));
                }
                break;
            case var other:
                map.Error(other, $"{map.Describe("headers")} must be a mapping of header names to values, not a {YamlMap.Kind(other)}");
                break;
        }
        var match = new RouteMatchConfig(host?.ToLowerInvariant(), prefix, path, new(methods.Select(m => m.ToUpperInvariant())), new(headers));
        map.LocateSelf(match);
        map.Locate(match, "host", "host");
        map.Locate(match, "path_prefix", "path_prefix");
        map.Locate(match, "path", "path");
        map.Locate(match, "methods", "methods");
        map.Locate(match, "headers", "headers");
        return match;
    }

    private static RetryConfig ReadRetries(YamlMap parent)
    {
        var map = parent.Map("retries", RetryKeys);
        if (map is null)
        {
            return RetryConfig.Unset;
        }
        EquatableList<string>? on = null;
        if (map.Has("on"))
        {
            var items = new List<string>();
            foreach (var item in map.Strings("on"))
            {
                if (RetryConfig.Conditions.Contains(item) || int.TryParse(item, out var status) && status is >= 400 and <= 599)
                {
                    items.Add(item);
                }
                else
                {
                    map.Error(map.Value("on")!, $"{map.Describe("on")}: '{item}' is not a retry condition{Suggest.DidYouMean(item, RetryConfig.Conditions)} (expected {string.Join(", ", RetryConfig.Conditions)}, or a status such as 503)");
                }
            }
            on = new(items);
        }
        var backoff = map.Map("backoff", BackoffKeys);
        return new RetryConfig(
            map.Int("attempts", 0, 10),
            on,
            map.Duration("per_try_timeout"),
            backoff?.Duration("base", allowZero: true),
            backoff?.Duration("max", allowZero: true),
            map.String("idempotency_header") is { Length: > 0 } header ? header : null,
            map.Size("max_body", 0, 64L << 20));
    }

    private static TimeoutsConfig ReadTimeouts(YamlMap parent)
    {
        var map = parent.Map("timeouts", TimeoutKeys);
        if (map is null)
        {
            return TimeoutsConfig.Unset;
        }
        return new TimeoutsConfig(map.Duration("connect"), map.Duration("response"), map.Duration("idle"))
        {
            TunnelIdle = map.Duration("tunnel_idle"),
            TunnelMax = map.Duration("tunnel_max"),
        };
    }

    private static PoolConfig? ReadPool(YamlMap parent, YamlNode node, string path)
    {
        var map = parent.Item(node, path, PoolKeys);
        if (map is null)
        {
            return null;
        }
        var name = map.String("name", required: true);
        var balancing = map.OneOf("balancing", BalancingPolicies.Names) ?? BalancingPolicies.Default;
        var timeouts = ReadTimeouts(map);
        var hostHeader = map.OneOf("host_header", HostHeaderModes) == "backend" ? HostHeaderMode.Backend : HostHeaderMode.Preserve;
        var backends = new List<BackendConfig>();
        var items = map.Sequence("backends");
        for (var i = 0; i < items.Count; i++)
        {
            var backend = ReadBackend(map, items[i], $"{map.Describe("backends")}[{i}]");
            if (backend is not null)
            {
                backends.Add(backend);
            }
        }
        var health = HealthReader.Read(map);
        var poolRetries = ReadRetries(map);
        var slowStart = map.Duration("slow_start", allowZero: true) ?? TimeSpan.Zero;
        var whenNone = map.OneOf("when_none_healthy", NoneHealthyModes) == "route_anyway" ? NoneHealthyMode.RouteAnyway : NoneHealthyMode.Fail;
        if (name is null)
        {
            return null;
        }
        var budget = map.Map("retry_budget", BudgetKeys);
        var limits = map.Map("limits", LimitKeys);
        var pool = new PoolConfig(name, balancing, new(backends), timeouts, hostHeader)
        {
            Health = health,
            SlowStart = slowStart,
            WhenNoneHealthy = whenNone,
            Retries = poolRetries,
            DrainTimeout = map.Duration("drain_timeout", allowZero: true),
            Tls = ReadPoolTls(map),
            Limits = limits is null ? LimitsConfig.None : new LimitsConfig(
                limits.Int("max_requests", 0, 1_000_000) ?? 0,
                limits.Int("max_connections", 0, 1_000_000) ?? 0,
                limits.Int("max_pending", 0, 1_000_000) ?? 0,
                limits.Duration("queue_timeout") ?? LimitsConfig.None.QueueTimeout)
            {
                UpstreamResponseHeaders = (int)(limits.Size("upstream_response_headers", 1024, 16 << 20) ?? LimitsConfig.DefaultUpstreamResponseHeaders),
            },
            RetryBudget = new RetryBudgetConfig(
                budget?.Int("percent", 0, 100) ?? RetryBudgetConfig.Default.Percent,
                budget?.Int("min_concurrent", 0, 100_000) ?? RetryBudgetConfig.Default.MinConcurrent),
        };
        map.LocateSelf(pool);
        map.Locate(pool, "name", "name");
        map.Locate(pool, "backends", "backends");
        if (items.Count > 0)
        {
            map.DeclareItems(pool, "backends");
        }
        return pool;
    }

    private static BackendConfig? ReadBackend(YamlMap pool, YamlNode node, string path)
    {
        // Shorthand: a backend may be written as just its address.
        if (node is YamlScalarNode scalar)
        {
            var text = scalar.Value ?? "";
            if (!HostPort.TryParse(text, allowPortZero: false, out var endpoint, out var error))
            {
                pool.Error(node, $"{path}: {error}");
                return null;
            }
            if (endpoint!.IsAnyHost)
            {
                pool.Error(node, $"{path}: '{text}' has no host; '*' means every interface and is for listeners only");
                return null;
            }
            var shorthand = new BackendConfig(text.Trim(), endpoint, 1, null);
            pool.Locate(shorthand, node);
            return shorthand;
        }
        var map = pool.Item(node, path, BackendKeys);
        if (map is null)
        {
            return null;
        }
        var address = map.Address("address", required: true, allowPortZero: false);
        var weight = map.Int("weight", BackendConfig.MinWeight, BackendConfig.MaxWeight) ?? 1;
        var name = map.String("name");
        if (name is not null && name.Contains('/', StringComparison.Ordinal))
        {
            map.Error(map.Value("name")!, $"{map.Describe("name")}: '{name}' holds a '/'; a backend's name is used in admin URLs");
        }
        if (address is null)
        {
            return null;
        }
        if (address.IsAnyHost)
        {
            map.Error(map.Value("address")!, $"{map.Describe("address")}: '{address}' has no host; '*' means every interface and is for listeners only");
            return null;
        }
        var backend = new BackendConfig(map.String("address")!.Trim(), address, weight, string.IsNullOrEmpty(name) ? null : name)
        {
            MaxRequests = map.Int("max_requests", 0, 1_000_000) ?? 0,
        };
        map.LocateSelf(backend);
        map.Locate(backend, "address", "address");
        map.Locate(backend, "name", "name");
        return backend;
    }

    private static AdminConfig? ReadAdmin(YamlMap top)
    {
        var map = top.Map("admin", AdminKeys);
        if (map is null)
        {
            return null;
        }
        var address = map.Address("address", required: false, allowPortZero: true) ?? AdminConfig.DefaultAddress;
        var tokenFile = map.String("token_file");
        var admin = new AdminConfig(address, string.IsNullOrEmpty(tokenFile) ? null : tokenFile);
        map.LocateSelf(admin);
        map.Locate(admin, "address", "address");
        map.Locate(admin, "token_file", "token_file");
        return admin;
    }

    private static AccessLogConfig ReadAccessLog(YamlMap top)
    {
        var map = top.Map("access_log", AccessLogKeys);
        if (map is null)
        {
            return AccessLogConfig.Default;
        }
        return new AccessLogConfig(
            map.Bool("enabled") ?? true,
            map.String("path") is { Length: > 0 } p ? p : AccessLogConfig.Stdout,
            map.OneOf("format", AccessLogFormats) ?? AccessLogConfig.JsonFormat);
    }
}
