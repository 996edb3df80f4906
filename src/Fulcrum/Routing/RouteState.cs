using Fulcrum.Forwarding;
using Fulcrum.Configuration;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Routing;

/// <summary>A compiled route: its match rules in a form cheap to test, its pool and its resolved timeouts.</summary>
public sealed class RouteState
{
    private readonly string[] _methods;
    private readonly HeaderMatchConfig[] _headers;

    internal RouteState(RouteConfig config, int order, PoolState pool)
    {
        Config = config;
        Order = order;
        Pool = pool;
        _methods = [.. config.Match.Methods];
        _headers = [.. config.Match.Headers];
        Timeouts = ResolvedTimeouts.Resolve(config.Timeouts, pool.Config.Timeouts);
        Retry = ResolvedRetry.Resolve(config.Retries, pool.Config.Retries);
        Hsts = config.Hsts?.HeaderValue;
    }

    /// <summary>The Strict-Transport-Security value for responses on TLS, made once; null: none.</summary>
    public string? Hsts { get; }

    public ResolvedRetry Retry { get; }

    public RouteConfig Config { get; }

    public string Name => Config.Name;

    /// <summary>Position in the file; the tie-breaker between equally specific routes.</summary>
    public int Order { get; }

    public PoolState Pool { get; }

    public ResolvedTimeouts Timeouts { get; }

    /// <summary>Tests everything but the host, which the table has already matched.</summary>
    public bool MatchesRequest(string path, string method, IRequestHeaders headers) =>
        MatchesPath(path) && MatchesMethod(method) && MatchesHeaders(headers);

    /// <summary>Why the request does not match this route's path, method or header rules; null when it does.</summary>
    internal string? WhyNot(string path, string method, IRequestHeaders headers)
    {
        var match = Config.Match;
        if (!MatchesPath(path))
        {
            return match.Path is { } exact ? $"path '{path}' is not exactly '{exact}'" : $"path '{path}' does not start with '{match.PathPrefix}'";
        }
        if (!MatchesMethod(method))
        {
            return $"method {method} is not one of {string.Join(", ", _methods)}";
        }
        foreach (var rule in _headers)
        {
            if (headers.Header(rule.Name) is not { Count: > 0 } values)
            {
                return $"header {rule.Name} is missing";
            }
            if (rule.Value is { } expected && !values.Any(v => string.Equals(v, expected, StringComparison.OrdinalIgnoreCase)))
            {
                return $"header {rule.Name} is '{values}', not '{expected}'";
            }
        }
        return null;
    }

    /// <summary>The rest of the reason a matching route matched.</summary>
    internal string WhyMatched()
    {
        var match = Config.Match;
        var why = match.Path is { } exact ? $", path is exactly '{exact}'" : match.PathPrefix is { } prefix ? $", path starts with '{prefix}'" : ", any path";
        if (_methods.Length > 0)
        {
            why += $", method is one of {string.Join(", ", _methods)}";
        }
        foreach (var rule in _headers)
        {
            why += rule.Value is null ? $", header {rule.Name} is present" : $", header {rule.Name} is '{rule.Value}'";
        }
        return why;
    }

    internal bool MatchesPath(string path)
    {
        var match = Config.Match;
        if (match.Path is { } exact)
        {
            return string.Equals(path, exact, StringComparison.Ordinal);
        }
        return match.PathPrefix is not { } prefix || path.StartsWith(prefix, StringComparison.Ordinal);
    }

    internal bool MatchesMethod(string method)
    {
        if (_methods.Length == 0)
        {
            return true;
        }
        foreach (var m in _methods)
        {
            if (string.Equals(m, method, StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    internal bool MatchesHeaders(IRequestHeaders headers)
    {
        foreach (var rule in _headers)
        {
            if (headers.Header(rule.Name) is not { Count: > 0 } values)
            {
                return false;
            }
            if (rule.Value is { } expected)
            {
                var found = false;
                foreach (var value in values)
                {
                    if (string.Equals(value, expected, StringComparison.OrdinalIgnoreCase))
                    {
                        found = true;
                        break;
                    }
                }
                if (!found)
                {
                    return false;
                }
            }
        }
        return true;
    }

    public override string ToString() => Name;
}
