using System.Text.Json;
using Fulcrum.Configuration;
using Fulcrum.Health;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Admin;

internal sealed partial class AdminApi
{
    /// <summary>GET a backend; with <c>?wait=healthy&amp;timeout=30s</c> it is a deploy gate: 200 once healthy, 408 with the last reason.</summary>
    private async Task GetBackendAsync(HttpContext context, PoolState pool, BackendState backend)
    {
        if (context.Request.Query["wait"].ToString() is { Length: > 0 } wait)
        {
            if (wait != "healthy")
            {
                await Error(context, 400, "bad_wait", $"wait={wait}: the only state to wait for is 'healthy'").ConfigureAwait(false);
                return;
            }
            if (!TryDuration(context, "timeout", TimeSpan.FromSeconds(30), out var timeout, out var error))
            {
                await Error(context, 400, "bad_timeout", error).ConfigureAwait(false);
                return;
            }
            var deadline = _runtime.Time.GetTimestamp();
            while (!backend.Health.TakesTraffic && _runtime.Time.GetElapsedTime(deadline) < timeout && !backend.Detached)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), _runtime.Time, context.RequestAborted).ConfigureAwait(false);
            }
            if (!backend.Health.TakesTraffic)
            {
                await Ok(context, BackendView.Of(backend), StatusCodes.Status408RequestTimeout).ConfigureAwait(false);
                return;
            }
        }
        await Ok(context, BackendView.Of(backend)).ConfigureAwait(false);
    }

    /// <summary>POST {address, weight, name}: registers a backend (pending, probed at once). Kept across restarts.</summary>
    private async Task AddBackendAsync(HttpContext context, PoolState pool, string who)
    {
        var body = await BodyAsync(context).ConfigureAwait(false);
        var address = String(body, "address");
        if (address is null)
        {
            await Error(context, 400, "bad_address", "give the backend's \"address\" as host:port").ConfigureAwait(false);
            return;
        }
        if (!HostPort.TryParse(address, allowPortZero: false, out var endpoint, out var problem) || endpoint!.IsAnyHost)
        {
            await Error(context, 400, "bad_address", $"address: {(endpoint is { IsAnyHost: true } ? "'*' is for listeners only" : problem)}").ConfigureAwait(false);
            return;
        }
        var weight = 1;
        if (body.TryGetProperty("weight", out var w))
        {
            if (w.ValueKind != JsonValueKind.Number || !w.TryGetInt32(out weight) || weight is < BackendConfig.MinWeight or > BackendConfig.MaxWeight)
            {
                await Error(context, 400, "bad_weight", $"weight: a whole number from {BackendConfig.MinWeight} to {BackendConfig.MaxWeight}").ConfigureAwait(false);
                return;
            }
        }
        var name = String(body, "name");
        if (name is not null && (name.Trim().Length == 0 || name.Contains('/', StringComparison.Ordinal)))
        {
            await Error(context, 400, "bad_name", "name: give a non-empty name without '/' (it is used in URLs), or leave it out").ConfigureAwait(false);
            return;
        }
        address = address.Trim();
        if (name is not null && pool.Find(name) is { } clash && !string.Equals(clash.Address, address, StringComparison.OrdinalIgnoreCase))
        {
            await Error(context, 409, "name_taken", $"pool '{pool.Name}' already has a backend named '{name}' ({clash.Address})").ConfigureAwait(false);
            return;
        }
        // Whether it was new is decided under the pool's lock, once: two requests racing to add the
        // same address get one 201 and one 200, and one audit event.
        var backend = _runtime.AddBackend(pool.Name, new BackendConfig(address, endpoint, weight, name), persist: true, out var isNew);
        if (isNew)
        {
            Audit.Record("add", pool.Name, backend.DisplayName, who, $"address {address}, weight {weight}", _runtime.Time.GetUtcNow());
        }
        await Ok(context, BackendView.Of(backend), isNew ? 201 : 200).ConfigureAwait(false);
    }

    /// <summary>DELETE: drains the backend (no new requests; those in flight finish, up to <c>?timeout=</c>), then removes it.</summary>
    private async Task RemoveBackendAsync(HttpContext context, PoolState pool, BackendState backend, string who)
    {
        if (!TryDuration(context, "timeout", TimeSpan.FromSeconds(30), out var timeout, out var error))
        {
            await Error(context, 400, "bad_timeout", error).ConfigureAwait(false);
            return;
        }
        _runtime.Health.SetOverride(pool, backend, OverrideKind.Drain, "being removed", who);
        var started = _runtime.Time.GetTimestamp();
        // The removal runs to its end even if the caller goes away (Ctrl-C, a client timeout):
        // a backend left drained "being removed" forever would be worse. The wait is bounded.
        while (backend.InFlight > 0 && _runtime.Time.GetElapsedTime(started) < timeout)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(50), _runtime.Time, CancellationToken.None).ConfigureAwait(false);
        }
        var left = backend.InFlight;
        _runtime.RemoveBackend(pool.Name, backend.Address, persist: true);
        Audit.Record("remove", pool.Name, backend.DisplayName, who, left == 0 ? "drained" : $"removed with {left} request(s) still in flight after {Duration.Format(timeout)}", _runtime.Time.GetUtcNow());
        await Ok(context, new { removed = backend.DisplayName, drained = left == 0, in_flight_left = left }).ConfigureAwait(false);
    }

    /// <summary>POST drain|disable|enable|force-healthy with {reason, ttl}.</summary>
    private async Task OverrideAsync(HttpContext context, PoolState pool, BackendState backend, string action, string who)
    {
        OverrideKind? kind = action switch
        {
            "drain" => OverrideKind.Drain,
            "disable" => OverrideKind.Disable,
            "force-healthy" => OverrideKind.ForceHealthy,
            "enable" => null,
            _ => (OverrideKind)(-1),
        };
        if (kind == (OverrideKind)(-1))
        {
            await Error(context, 404, "not_found", $"no action '{action}'; use drain, disable, enable, force-healthy or probe").ConfigureAwait(false);
            return;
        }
        var body = await BodyAsync(context).ConfigureAwait(false);
        var reason = String(body, "reason") is { Length: > 0 } r ? r : "no reason given";
        TimeSpan? ttl = null;
        if (String(body, "ttl") is { Length: > 0 } ttlText)
        {
            if (!Duration.TryParse(ttlText, out var parsed, out var error) || parsed <= TimeSpan.Zero)
            {
                await Error(context, 400, "bad_ttl", $"ttl: {(error.Length > 0 ? error : "must be longer than 0s")}").ConfigureAwait(false);
                return;
            }
            ttl = parsed;
        }
        if (kind is { } k)
        {
            _runtime.Health.SetOverride(pool, backend, k, reason, who, ttl);
        }
        else
        {
            _runtime.Health.ClearOverride(pool, backend);
        }
        Audit.Record(action, pool.Name, backend.DisplayName, who, ttl is { } t ? $"{reason} (for {Duration.Format(t)})" : reason, _runtime.Time.GetUtcNow());
        await Ok(context, BackendView.Of(backend)).ConfigureAwait(false);
    }

    /// <summary>POST probe: runs a probe now and returns its result (and the health it led to).</summary>
    private async Task ProbeAsync(HttpContext context, PoolState pool, BackendState backend)
    {
        if (pool.Config.Health.Active is null)
        {
            await Error(context, 409, "no_active_checks", $"pool '{pool.Name}' has no active health check to run (health.active in its configuration)").ConfigureAwait(false);
            return;
        }
        var result = await _runtime.Prober.ProbeNowAsync(pool, backend).WaitAsync(context.RequestAborted).ConfigureAwait(false);
        await Ok(context, new { probe = result is null ? null : ProbeView.Of(result), backend = BackendView.Of(backend) }).ConfigureAwait(false);
    }
}
