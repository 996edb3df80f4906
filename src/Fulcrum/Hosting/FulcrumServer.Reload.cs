using System.Diagnostics;
using Fulcrum.Configuration;
using Fulcrum.Runtime;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Hosting;

/// <summary>Hot reload: read and validate the file, bind new listeners, apply, unbind old listeners.</summary>
public sealed partial class FulcrumServer
{
    private readonly SemaphoreSlim _reloadGate = new(1, 1);
    private readonly List<ListenerHost> _leaving = [];
    private ConfigWatcher? _watcher;
    private DateTimeOffset _appliedAt;
    private long _reloads;
    private long _reloadFailures;
    private ReloadResult? _lastReload;

    /// <summary>The configuration in force and how reloads have gone.</summary>
    public ConfigStatus Status => new(Runtime.Current.Config.SourcePath, _appliedAt, Interlocked.Read(ref _reloads), Interlocked.Read(ref _reloadFailures), Volatile.Read(ref _lastReload));

    /// <summary>
    /// Reloads the configuration file. It is validated completely first: with any error, nothing
    /// changes and the errors are returned (and logged and counted). New listeners are bound
    /// before anything is applied, so an address that cannot be bound refuses the whole reload.
    /// Then the runtime applies the configuration (state kept, one new snapshot), and listeners no
    /// longer configured stop accepting and finish what they have. One reload runs at a time.
    /// </summary>
    /// <param name="trigger">What asked: <c>file</c>, <c>SIGHUP</c>, <c>api:NAME</c>.</param>
    public async Task<ReloadResult> ReloadAsync(string trigger)
    {
        await _reloadGate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (Volatile.Read(ref _stopped) != 0)
            {
                return Refuse(trigger, ["Fulcrum is shutting down"], 0, count: false);
            }
            var started = Stopwatch.GetTimestamp();
            var path = Runtime.Current.Config.SourcePath;
            if (path is null)
            {
                return Refuse(trigger, ["this configuration was not loaded from a file, so there is nothing to reload"], 0);
            }
            ConfigLoadResult loaded;
            try
            {
                loaded = ConfigLoader.LoadFile(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Refuse(trigger, [$"{path}: cannot read: {e.Message}"], Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            var loadMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            if (!loaded.Success)
            {
                return Refuse(trigger, [.. loaded.Errors.Select(e => e.ToString())], loadMs);
            }
            var next = loaded.Config!;
            foreach (var warning in loaded.Warnings)
            {
                LogWarning(warning.ToString());
            }
            Certificates.Load(next);
            var applying = Stopwatch.GetTimestamp();

            // Listeners: one on the same address and protocol is kept (under its new name if it
            // was renamed); new ones are bound now, before anything changes.
            var keep = new Dictionary<string, ListenerHost>(StringComparer.Ordinal);
            var renames = new List<(ListenerHost Host, ListenerConfig Config)>();
            var restartOnly = new List<string>();
            var toBind = new List<ListenerConfig>();
            Dictionary<string, ListenerHost> current;
            lock (_listeners)
            {
                current = new Dictionary<string, ListenerHost>(_listeners, StringComparer.Ordinal);
            }
            var unmatched = current.Values.ToList();
            foreach (var listener in next.Listeners)
            {
                var same = unmatched.FirstOrDefault(h => h.Config.Address.Equals(listener.Address) && h.Config.Protocol == listener.Protocol && (h.Config.Tls is null) == (listener.Tls is null));
                if (same is not null)
                {
                    unmatched.Remove(same);
                    keep[listener.Name] = same;
                    // Its new settings (a name, max_connections) apply once the reload cannot fail;
                    // what its Kestrel server was built with (head limits, timeouts) at the next start.
                    renames.Add((same, listener));
                    var builtWith = same.StartedWith;
                    if (!Equals(builtWith.Timeouts, listener.Timeouts) || !Equals(builtWith.Limits with { MaxRequestsPerConnection = null }, listener.Limits with { MaxRequestsPerConnection = null }))
                    {
                        restartOnly.Add($"listeners[{listener.Name}].limits/timeouts");
                    }
                }
                else
                {
                    toBind.Add(listener);
                }
            }
            var bound = new List<ListenerHost>();
            foreach (var listener in toBind)
            {
                try
                {
                    bound.Add(await ListenerHost.StartAsync(listener, _options, _pipeline, () => Metrics, ProtocolErrors, ConnectionErrors, Certificates, _loggers, CancellationToken.None).ConfigureAwait(false));
                }
                catch (IOException e)
                {
                    foreach (var host in bound)
                    {
                        await host.DisposeAsync().ConfigureAwait(false);
                    }
                    var hint = unmatched.Any(h => h.Config.Address.Port == listener.Address.Port)
                        ? " (a listener being removed holds that port: change its protocol or address in two reloads, removing it first)"
                        : "";
                    return Refuse(trigger, [$"{path}: {e.Message}{hint}; nothing was changed"], loadMs);
                }
            }

            ReloadChanges changes;
            try
            {
                changes = Runtime.Apply(next);
            }
            catch
            {
                foreach (var host in bound)
                {
                    await host.DisposeAsync().ConfigureAwait(false);
                }
                throw;
            }
            Certificates.Use(next); // certificates read again now; sources no listener uses are dropped
            foreach (var (host, renamed) in renames)
            {
                host.Renamed(renamed);
            }
            lock (_listeners)
            {
                _listeners.Clear();
                foreach (var (name, host) in keep)
                {
                    _listeners[name] = host;
                }
                foreach (var host in bound)
                {
                    _listeners[host.Name] = host;
                    changes.ListenersAdded.Add(host.Name);
                }
                _leaving.AddRange(unmatched);
            }
            var applyMs = Stopwatch.GetElapsedTime(applying).TotalMilliseconds;
            foreach (var host in unmatched)
            {
                changes.ListenersRemoved.Add(host.Name);
                _ = RetireListenerAsync(host, next.Shutdown.DrainTimeout);
            }
            NoteRestartOnly(_startConfig, next, changes);
            changes.NeedRestart.AddRange(restartOnly);

            var result = new ReloadResult(true, trigger, Runtime.Time.GetUtcNow(), [], changes, loadMs, applyMs);
            _appliedAt = result.At;
            Interlocked.Increment(ref _reloads);
            Volatile.Write(ref _lastReload, result);
            Metrics?.RecordReload(true, result.At);
            LogReloaded(trigger, applyMs, Summary(changes));
            foreach (var section in changes.NeedRestart)
            {
                LogNeedsRestart(section);
            }
            return result;
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    /// <summary>A listener the new configuration dropped: it stops accepting and finishes what it has.</summary>
    private async Task RetireListenerAsync(ListenerHost host, TimeSpan drain)
    {
        using (var timeout = new CancellationTokenSource(drain))
        {
            await host.StopAsync(timeout.Token).ConfigureAwait(false);
        }
        lock (_listeners)
        {
            _leaving.Remove(host);
        }
        await host.DisposeAsync().ConfigureAwait(false);
    }

    private ReloadResult Refuse(string trigger, IReadOnlyList<string> errors, double loadMs, bool count = true)
    {
        var result = new ReloadResult(false, trigger, Runtime.Time.GetUtcNow(), errors, null, loadMs, 0);
        if (!count)
        {
            return result; // not a bad file: nothing to alert on
        }
        Interlocked.Increment(ref _reloads);
        Interlocked.Increment(ref _reloadFailures);
        Volatile.Write(ref _lastReload, result);
        Metrics?.RecordReload(false, result.At);
        LogRefused(trigger, errors.Count, string.Join("\n  ", errors));
        return result;
    }

    /// <summary>Sections read only at start: a change is reported, not applied.</summary>
    private static void NoteRestartOnly(FulcrumConfig before, FulcrumConfig after, ReloadChanges changes)
    {
        if (!Equals(before.Admin, after.Admin))
        {
            changes.NeedRestart.Add("admin");
        }
        if (!Equals(before.AccessLog, after.AccessLog))
        {
            changes.NeedRestart.Add("access_log");
        }
        if (before.MetricsEnabled != after.MetricsEnabled)
        {
            changes.NeedRestart.Add("metrics");
        }
        if (before.OtlpEndpoint != after.OtlpEndpoint)
        {
            changes.NeedRestart.Add("tracing");
        }
        if (before.StateFile != after.StateFile)
        {
            changes.NeedRestart.Add("state_file");
        }
    }

    internal static string Summary(ReloadChanges c)
    {
        var parts = new List<string>();
        void Add(string what, List<string> items)
        {
            if (items.Count > 0)
            {
                parts.Add($"{what} {string.Join(", ", items.Take(5))}{(items.Count > 5 ? $" and {items.Count - 5} more" : "")}");
            }
        }
        Add("listeners added:", c.ListenersAdded);
        Add("listeners removed:", c.ListenersRemoved);
        Add("pools added:", c.PoolsAdded);
        Add("pools removed:", c.PoolsRemoved);
        Add("pools changed:", c.PoolsChanged);
        Add("backends added:", c.BackendsAdded);
        Add("backends removed:", c.BackendsRemoved);
        Add("backends updated:", c.BackendsUpdated);
        if (c.RoutesChanged)
        {
            parts.Add("routes changed");
        }
        return parts.Count == 0 ? "no changes" : string.Join("; ", parts);
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "configuration reloaded ({Trigger}) in {ApplyMs:0.0} ms: {Summary}")]
    private partial void LogReloaded(string trigger, double applyMs, string summary);

    [LoggerMessage(EventId = 11, Level = LogLevel.Error, Message = "configuration reload ({Trigger}) refused, the running configuration stays; {Count} error(s):\n  {Errors}")]
    private partial void LogRefused(string trigger, int count, string errors);

    [LoggerMessage(EventId = 14, Level = LogLevel.Warning, Message = "configuration: {Warning}")]
    private partial void LogWarning(string warning);

    [LoggerMessage(EventId = 12, Level = LogLevel.Warning, Message = "configuration section '{Section}' changed; it takes effect at the next start")]
    private partial void LogNeedsRestart(string section);
}
