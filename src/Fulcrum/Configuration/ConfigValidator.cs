namespace Fulcrum.Configuration;

/// <summary>
/// Checks that span records: names that must be unique, references that must resolve, and values
/// whose meaning depends on the rest of the file. Returns every error; applies nothing.
/// </summary>
public static class ConfigValidator
{
    /// <param name="config">The configuration to check.</param>
    /// <param name="map">Where its parts were written.</param>
    /// <param name="declared">
    /// The top-level lists the file had items in, even ones that failed to parse; an empty-list
    /// error for those would only repeat the parse error. Null when the config was built in code.
    /// </param>
    public static IReadOnlyList<ConfigError> Validate(FulcrumConfig config, ConfigSourceMap map, IReadOnlySet<string>? declared = null)
    {
        var errors = new List<ConfigError>();

        if (config.Listeners.Count == 0 && declared?.Contains("listeners") != true)
        {
            errors.Add(map.Error(config, "listeners", "no listeners: add at least one, like '- { name: web, address: 127.0.0.1:8080 }' under listeners"));
        }
        CheckUnique(config.Listeners, l => l.Name, "listener", map, errors);
        var bound = new List<ListenerConfig>();
        foreach (var listener in config.Listeners)
        {
            if (bound.Find(other => Overlaps(other.Address, listener.Address)) is { } earlier)
            {
                errors.Add(map.Error(listener, "address", $"listener '{listener.Name}' uses address {listener.Address}, which overlaps listener '{earlier.Name}' ({earlier.Address})"));
            }
            bound.Add(listener);
        }
        if (config.Admin is { IsLoopback: false, TokenFile: null } open)
        {
            errors.Add(map.Error(open, "address", $"admin.address {open.Address} can be reached from other machines, and the admin API can take backends out of rotation: set admin.token_file, or bind it to 127.0.0.1"));
        }
        if (config.Admin is { } admin && bound.Find(l => Overlaps(l.Address, admin.Address)) is { } clash)
        {
            errors.Add(map.Error(admin, "address", $"admin.address {admin.Address} overlaps listener '{clash.Name}' ({clash.Address})"));
        }

        if (config.Routes.Count == 0 && declared?.Contains("routes") != true)
        {
            errors.Add(map.Error(config, "routes", "no routes: every request would get 404 no_route; add a route that sends traffic to a pool"));
        }
        CheckUnique(config.Routes, r => r.Name, "route", map, errors);
        CheckUnique(config.Pools, p => p.Name, "pool", map, errors);

        var poolNames = config.Pools.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var route in config.Routes)
        {
            if (!poolNames.Contains(route.Pool))
            {
                var known = poolNames.Count == 0 ? "there are no pools" : $"pools are: {string.Join(", ", poolNames)}";
                errors.Add(map.Error(route, "pool", $"route '{route.Name}' sends traffic to pool '{route.Pool}', which does not exist{Suggest.DidYouMean(route.Pool, poolNames)} ({known})"));
            }
            ValidateMatch(route, map, errors);
        }

        foreach (var pool in config.Pools)
        {
            if (pool.Backends.Count == 0 && !map.HasDeclaredItems(pool, "backends"))
            {
                errors.Add(map.Error(pool, "backends", $"pool '{pool.Name}' has no backends; list at least one under backends"));
            }
            var addresses = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var backend in pool.Backends)
            {
                if (!addresses.Add(backend.Address))
                {
                    errors.Add(map.Error(backend, "address", $"pool '{pool.Name}' lists backend {backend.Address} twice; give it a higher weight instead"));
                }
                if (backend.Name is { } name && !names.Add(name))
                {
                    errors.Add(map.Error(backend, "name", $"pool '{pool.Name}' has two backends named '{name}'"));
                }
            }
        }
        return errors;
    }

    private static void ValidateMatch(RouteConfig route, ConfigSourceMap map, List<ConfigError> errors)
    {
        var match = route.Match;
        if (match.Host is { } host && !IsValidHostPattern(host))
        {
            errors.Add(map.Error(match, "host", $"route '{route.Name}': host '{host}' is not a host name or a wildcard like *.example.com (no port, no scheme)"));
        }
        if (match.PathPrefix is { } prefix && !prefix.StartsWith('/'))
        {
            errors.Add(map.Error(match, "path_prefix", $"route '{route.Name}': path_prefix '{prefix}' must start with '/'"));
        }
        if (match.Path is { } path && !path.StartsWith('/'))
        {
            errors.Add(map.Error(match, "path", $"route '{route.Name}': path '{path}' must start with '/'"));
        }
        if (match.Path is not null && match.PathPrefix is not null)
        {
            errors.Add(map.Error(match, "path", $"route '{route.Name}': give either path (exact) or path_prefix, not both"));
        }
        foreach (var method in match.Methods)
        {
            if (!IsToken(method))
            {
                errors.Add(map.Error(match, "methods", $"route '{route.Name}': '{method}' is not an HTTP method"));
            }
        }
        foreach (var header in match.Headers)
        {
            if (!IsToken(header.Name))
            {
                errors.Add(map.Error(match, "headers", $"route '{route.Name}': '{header.Name}' is not a valid header name"));
            }
        }
    }

    private static void CheckUnique<T>(EquatableList<T> items, Func<T, string> name, string what, ConfigSourceMap map, List<ConfigError> errors)
        where T : notnull
    {
        var seen = new Dictionary<string, T>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            var n = name(item);
            if (!seen.TryAdd(n, item))
            {
                var (line, _) = map.Get(seen[n], "name");
                errors.Add(map.Error(item, "name", $"duplicate {what} name '{n}' (first defined on line {line})"));
            }
        }
    }

    /// <summary>
    /// Whether two addresses cannot both be bound: the same port on the same host, or on a
    /// wildcard (<c>*</c>, <c>0.0.0.0</c>, <c>::</c>) that takes the port on every interface.
    /// Port 0 (any free port) never clashes.
    /// </summary>
    internal static bool Overlaps(HostPort a, HostPort b) =>
        a.Port != 0 && a.Port == b.Port && (IsWildcard(a.Host) || IsWildcard(b.Host) || Canonical(a.Host) == Canonical(b.Host));

    private static bool IsWildcard(string host) => host is "*" or "0.0.0.0" or "::";

    private static string Canonical(string host) => host.Equals("localhost", StringComparison.OrdinalIgnoreCase) ? "127.0.0.1" : host.ToLowerInvariant();

    internal static bool IsValidHostPattern(string host)
    {
        var name = host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
        if (name.Length == 0 || name.Contains('*', StringComparison.Ordinal))
        {
            return false;
        }
        foreach (var c in name)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '.' and not '_')
            {
                return false;
            }
        }
        return true;
    }

    // RFC 9110 token: the characters a method or header name may use.
    internal static bool IsToken(string s)
    {
        if (s.Length == 0)
        {
            return false;
        }
        foreach (var c in s)
        {
            if (!char.IsAsciiLetterOrDigit(c) && "!#$%&'*+-.^_`|~".IndexOf(c, StringComparison.Ordinal) < 0)
            {
                return false;
            }
        }
        return true;
    }
}
