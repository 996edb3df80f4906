using System.Collections.Concurrent;
using Fulcrum.Forwarding;
using Fulcrum.Health;

namespace Fulcrum.Runtime;

/// <summary>
/// Every open tunnel, and the watch that closes them: silent past their route's
/// <c>tunnel_idle</c>, older than its <c>tunnel_max</c>, or on a backend that has been draining or
/// disabled for longer than its pool's <c>drain_timeout</c>. Shutdown closes what is left.
/// </summary>
internal sealed class TunnelRegistry : IDisposable
{
    /// <summary>How often the watch looks; a tunnel timeout fires up to this much late.</summary>
    internal static readonly TimeSpan WatchInterval = TimeSpan.FromMilliseconds(250);

    private readonly ConcurrentDictionary<Tunnel, byte> _open = new();
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();

    public TunnelRegistry(TimeProvider time)
    {
        _time = time;
        _ = WatchAsync();
    }

    public int Count => _open.Count;

    public void Add(Tunnel tunnel)
    {
        _open.TryAdd(tunnel, 0);
        tunnel.Backend.BeginTunnel();
    }

    public void Remove(Tunnel tunnel)
    {
        if (_open.TryRemove(tunnel, out _))
        {
            tunnel.Backend.EndTunnel();
        }
    }

    /// <summary>Closes every open tunnel (shutdown); each says goodbye and ends on its own.</summary>
    public void CloseAll(string reason)
    {
        foreach (var tunnel in _open.Keys)
        {
            tunnel.Close(reason);
        }
    }

    /// <summary>Completes when no tunnel is open, or when <paramref name="timeout"/> passes; true when none is.</summary>
    public async Task<bool> WaitEmptyAsync(TimeSpan timeout)
    {
        // Polled, on the real clock: this runs once, at shutdown, and must not race tunnels
        // opening and closing, nor wait on a test's manual clock.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        while (!_open.IsEmpty)
        {
            var left = timeout - System.Diagnostics.Stopwatch.GetElapsedTime(started);
            if (left <= TimeSpan.Zero)
            {
                return false;
            }
            await Task.Delay(left < TimeSpan.FromMilliseconds(50) ? left : TimeSpan.FromMilliseconds(50)).ConfigureAwait(false);
        }
        return true;
    }

    /// <summary>Looks at each tunnel now and closes those past a limit (the watch calls this).</summary>
    internal void Sweep()
    {
        if (_open.IsEmpty)
        {
            return;
        }
        var now = _time.GetTimestamp();
        var utcNow = _time.GetUtcNow();
        foreach (var tunnel in _open.Keys)
        {
            if (tunnel.MaxLifetime is { } max && _time.GetElapsedTime(tunnel.Started, now) >= max)
            {
                tunnel.Close(TunnelCloseReasons.MaxLifetime);
            }
            else if (_time.GetElapsedTime(tunnel.LastActivity, now) >= tunnel.Idle)
            {
                tunnel.Close(TunnelCloseReasons.Idle);
            }
            else if (tunnel.Pool.Config.DrainTimeout is { } drain)
            {
                var backend = tunnel.Backend;
                var health = backend.Health;
                if (backend.Detached ? utcNow - backend.DetachedAt >= drain
                    : health.Status is HealthStatus.Draining or HealthStatus.Disabled && utcNow - health.Since >= drain)
                {
                    tunnel.Close(TunnelCloseReasons.Drained);
                }
            }
        }
    }

    private async Task WatchAsync()
    {
        using var timer = new PeriodicTimer(WatchInterval, _time);
        var stop = _stop.Token;
        try
        {
            while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
            {
                try
                {
                    Sweep();
                }
                catch (Exception e)
                {
                    // The watch must outlive any one bad sweep, or no tunnel limit holds again.
                    Console.Error.WriteLine($"fulcrum: the tunnel watch failed a sweep: {e}");
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
    }
}
