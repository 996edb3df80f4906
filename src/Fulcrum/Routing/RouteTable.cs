using Fulcrum.Forwarding;
using System.Collections.Frozen;
using Fulcrum.Configuration;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Routing;

/// <summary>
/// The routes of one configuration, compiled for matching. The most specific route wins:
/// an exact host beats a wildcard host (a longer wildcard suffix beats a shorter one), which beats
/// no host; within the same host, an exact path beats any prefix, a longer prefix beats a shorter
/// one, and any path rule beats none. Equally specific routes go to the one earlier in the file.
/// Method and header rules do not add specificity: a route whose method or headers do not match
/// is skipped, and the next most specific route is tried.
/// </summary>
public sealed class RouteTable
{
    private readonly FrozenDictionary<string, RouteState[]> _exactHosts;
    private readonly (string Suffix, RouteState[] Routes)[] _wildcards;
    private readonly RouteState[] _anyHost;

    private RouteTable(FrozenDictionary<string, RouteState[]> exactHosts, (string, RouteState[])[] wildcards, RouteState[] anyHost, IReadOnlyList<RouteState> all)
    {
        _exactHosts = exactHosts;
        _wildcards = wildcards;
        _anyHost = anyHost;
        All = all;
    }

    /// <summary>Every route in file order.</summary>
    public IReadOnlyList<RouteState> All { get; }

    public static RouteTable Build(FulcrumConfig config, IReadOnlyDictionary<string, PoolState> pools)
    {
        var all = new List<RouteState>();
        for (var i = 0; i < config.Routes.Count; i++)
        {
            var route = config.Routes[i];
            all.Add(new RouteState(route, i, pools[route.Pool]));
        }

        var exact = new Dictionary<string, List<RouteState>>(StringComparer.OrdinalIgnoreCase);
        var wildcard = new Dictionary<string, List<RouteState>>(StringComparer.OrdinalIgnoreCase);
        var any = new List<RouteState>();
        foreach (var route in all)
        {
            var host = route.Config.Match.Host;
            if (host is null or "*")
            {
                any.Add(route);
            }
            else if (host.StartsWith("*.", StringComparison.Ordinal))
            {
                Add(wildcard, host[1..], route); // keep the dot: ".example.com"
            }
            else
            {
                Add(exact, host, route);
            }
        }

        return new RouteTable(
            exact.ToFrozenDictionary(kv => kv.Key, kv => Sorted(kv.Value), StringComparer.OrdinalIgnoreCase),
            [.. wildcard.OrderByDescending(kv => kv.Key.Length).Select(kv => (kv.Key, Sorted(kv.Value)))],
            Sorted(any),
            all);

        static void Add(Dictionary<string, List<RouteState>> map, string key, RouteState route)
        {
            if (!map.TryGetValue(key, out var list))
            {
                map[key] = list = [];
            }
            list.Add(route);
        }
    }

    /// <summary>Orders routes for one host: exact paths, then prefixes longest first, then no path; file order breaks ties.</summary>
    private static RouteState[] Sorted(List<RouteState> routes) =>
        [.. routes.OrderBy(PathRank).ThenByDescending(r => r.Config.Match.PathPrefix?.Length ?? 0).ThenBy(r => r.Order)];

    private static int PathRank(RouteState route) =>
        route.Config.Match.Path is not null ? 0 : route.Config.Match.PathPrefix is not null ? 1 : 2;

    /// <summary>The route for a request, or null (Fulcrum answers 404 no_route).</summary>
    public RouteState? Match(string host, string path, string method, IRequestHeaders headers)
    {
        host = NormalizeHost(host);
        if (host.Length > 0)
        {
            if (_exactHosts.TryGetValue(host, out var exact) && First(exact, path, method, headers) is { } hit)
            {
                return hit;
            }
            foreach (var (suffix, routes) in _wildcards)
            {
                if (host.Length > suffix.Length && host.EndsWith(suffix, StringComparison.OrdinalIgnoreCase) && First(routes, path, method, headers) is { } wild)
                {
                    return wild;
                }
            }
        }
        return First(_anyHost, path, method, headers);
    }

    /// <summary>
    /// Every route, in the order <see cref="Match"/> tries them for this request, with whether it
    /// matched and why; the first that matched is the one a request would take.
    /// </summary>
    public IReadOnlyList<RouteExplanation> Explain(string host, string path, string method, IRequestHeaders headers)
    {
        host = NormalizeHost(host);
        var result = new List<RouteExplanation>();
        var tried = new HashSet<RouteState>();
        var found = false;
        void Consider(RouteState[] routes, string hostWhy)
        {
            foreach (var route in routes)
            {
                tried.Add(route);
                var why = route.WhyNot(path, method, headers);
                var matched = why is null && !found;
                result.Add(new RouteExplanation(route.Name, matched, why is not null ? why
                    : found ? $"{hostWhy} and everything else matches, but a more specific route came first"
                    : $"{hostWhy}{route.WhyMatched()}"));
                found |= matched;
            }
        }
        if (host.Length > 0 && _exactHosts.TryGetValue(host, out var exact))
        {
            Consider(exact, $"host is exactly '{host}'");
        }
        foreach (var (suffix, routes) in _wildcards)
        {
            if (host.Length > suffix.Length && host.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                Consider(routes, $"host '{host}' matches '*{suffix}'");
            }
        }
        Consider(_anyHost, "the route matches any host");
        foreach (var route in All)
        {
            if (!tried.Contains(route))
            {
                result.Add(new RouteExplanation(route.Name, false, $"host '{host}' is not '{route.Config.Match.Host}'"));
            }
        }
        return result;
    }

    private static RouteState? First(RouteState[] routes, string path, string method, IRequestHeaders headers)
    {
        foreach (var route in routes)
        {
            if (route.MatchesRequest(path, method, headers))
            {
                return route;
            }
        }
        return null;
    }

    /// <summary>A Host header's host part: no port, no trailing dot.</summary>
    internal static string NormalizeHost(string host)
    {
        if (host.Length > 0 && host[^1] == '.')
        {
            host = host[..^1];
        }
        return host;
    }
}
