using Fulcrum.Forwarding;
using Fulcrum.Balancing;
using Fulcrum.Health;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Admin;

internal sealed partial class AdminApi
{
    private sealed record ExplainedBackend(string Name, string Address, string Status, string Reason, bool Eligible);

    private sealed record Explanation(
        string Method,
        string Url,
        string? Route,
        IReadOnlyList<Routing.RouteExplanation> Routes,
        string? Pool,
        string? Balancing,
        IReadOnlyList<ExplainedBackend>? Backends,
        string? WouldPick,
        string Outcome);

    /// <summary>GET explain?method=GET&amp;url=http://host/path: which route, why, each backend's eligibility, and the pick now.</summary>
    private async Task ExplainAsync(HttpContext context)
    {
        var url = context.Request.Query["url"].ToString();
        var method = context.Request.Query["method"].ToString() is { Length: > 0 } m ? m.ToUpperInvariant() : "GET";
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            await Error(context, 400, "bad_url", "give the request as url=http://host/path (and method=GET, the default)").ConfigureAwait(false);
            return;
        }
        var headers = new HeaderDictionary();
        foreach (var header in context.Request.Query["header"])
        {
            var colon = header?.IndexOf(':', StringComparison.Ordinal) ?? -1;
            if (colon > 0)
            {
                headers.Append(header![..colon].Trim(), header[(colon + 1)..].Trim());
            }
        }
        var snapshot = _runtime.Current;
        var path = Uri.UnescapeDataString(uri.AbsolutePath);
        var lookup = new HeaderDictionaryLookup(headers);
        var routes = snapshot.Routes.Explain(uri.Host, path, method, lookup);
        var route = snapshot.Routes.Match(uri.Host, path, method, lookup);
        if (route is null)
        {
            await Ok(context, new Explanation(method, url, null, routes, null, null, null, null, "404 no_route: no route matches")).ConfigureAwait(false);
            return;
        }
        var pool = route.Pool;
        var available = pool.Available;
        var backends = pool.Backends.Select(b => new ExplainedBackend(b.DisplayName, b.Address, HealthNames.Of(b.Health.Status), b.Health.Reason, Array.IndexOf(available, b) >= 0)).ToList();
        if (available.Length == 0)
        {
            await Ok(context, new Explanation(method, url, route.Name, routes, pool.Name, pool.Config.Balancing, backends, null,
                $"503 no_healthy_backend: none of the {pool.Backends.Count} backends of pool '{pool.Name}' may take traffic")).ConfigureAwait(false);
            return;
        }
        var pick = Peek(pool, available);
        await Ok(context, new Explanation(method, url, route.Name, routes, pool.Name, pool.Config.Balancing, backends, pick.DisplayName,
            $"forwarded to pool '{pool.Name}' ({available.Length} of {pool.Backends.Count} backends eligible{(pool.FailingOpen ? ", failing open" : "")})")).ConfigureAwait(false);
    }

    /// <summary>
    /// The backend the policy would pick now, without changing its state: round robin's next turn
    /// is read from its scores rather than taken.
    /// </summary>
    private static BackendState Peek(PoolState pool, BackendState[] candidates)
    {
        if (pool.Policy.Name != BalancingPolicies.RoundRobin)
        {
            return pool.Policy.Pick(pool, candidates);
        }
        lock (pool.BalancerLock)
        {
            var best = candidates[0];
            foreach (var c in candidates)
            {
                if (c.SmoothWeight + c.EffectiveWeight > best.SmoothWeight + best.EffectiveWeight)
                {
                    best = c;
                }
            }
            return best;
        }
    }
}
