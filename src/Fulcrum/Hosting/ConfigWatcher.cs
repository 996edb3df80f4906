using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Hosting;

/// <summary>
/// Watches the configuration file and reloads when its content changes, debounced. It watches the
/// file's folder rather than the file, so every way of replacing a file is seen: written in
/// place, renamed over (editors, <c>mv</c>), or a Kubernetes ConfigMap's symlink swap. A file
/// created, renamed or deleted in the folder, or a write to the configuration file (or the file
/// its link points to), schedules a look 300 ms after the last such event; writes to other files
/// there are ignored. While other files keep being created or renamed there, the look comes at
/// most a second after the first of them. The reload runs when the content's hash differs from
/// the last one seen.
/// </summary>
/// <remarks>
/// Events are hints, not the truth: inotify merges events, its queue can overflow, and a look can
/// read a file halfway through a write that raises no later event of its own. So the content is
/// also compared by a poll four times a second (a read and a hash of a small file, about 20 µs);
/// a difference schedules a look as an event would. Whatever happened to the events, the content
/// in force is the file's within the poll, the quiet time and one reload of the last write.
/// </remarks>
internal sealed partial class ConfigWatcher : IDisposable
{
    /// <summary>Quiet time after the last event before the file is read: an editor's save is several events.</summary>
    internal static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(300);

    /// <summary>
    /// The longest a look waits after the first event about another file: such events that never
    /// pause (a state file replaced every few milliseconds) would otherwise put it off for ever.
    /// The configuration's own events are not bounded, so a file written slowly is read whole.
    /// </summary>
    internal static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(1);

    /// <summary>How often the content is compared whatever the events said.</summary>
    internal static readonly TimeSpan PollEvery = TimeSpan.FromMilliseconds(250);

    private readonly string _path;
    private readonly string _name;
    private readonly Func<Task<ReloadResult>> _reload;
    private readonly ILogger _log;
    private readonly FileSystemWatcher? _watcher;
    private readonly Timer _timer;
    private readonly Timer _poll;
    private readonly object _lock = new();
    private string? _lastHash;
    private bool _disposed;
    private bool _scheduled; // a look is due: the poll need not read the file
    // When the first event about another file not yet answered by a look came
    // (Environment.TickCount64); 0 when none.
    private long _firstOther;

    /// <summary>How many times the file was read to compare its hash (tests).</summary>
    internal int Looks;

    /// <param name="path">The configuration file.</param>
    /// <param name="loadedHash">The hash of the content in force (<see cref="Configuration.FulcrumConfig.SourceHash"/>):
    /// an edit made while Fulcrum was starting is then still seen, by a first look at once.</param>
    /// <param name="reload">Runs a reload.</param>
    /// <param name="log">Where a failure to watch is reported.</param>
    /// <param name="watchEvents">False: no file events at all, only the poll (tests of lost events).</param>
    public ConfigWatcher(string path, string? loadedHash, Func<Task<ReloadResult>> reload, ILogger log, bool watchEvents = true)
    {
        _path = Path.GetFullPath(path);
        _name = Path.GetFileName(_path);
        _reload = reload;
        _log = log;
        _lastHash = loadedHash ?? Hash();
        _timer = new Timer(_ => _ = CheckAsync(), null, Timeout.Infinite, Timeout.Infinite);
        _poll = new Timer(_ => Poll(), null, PollEvery, PollEvery);
        if (!watchEvents)
        {
            return;
        }
        try
        {
            _watcher = new FileSystemWatcher(Path.GetDirectoryName(_path)!)
            {
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
                IncludeSubdirectories = false,
            };
            _watcher.Changed += OnEvent;
            _watcher.Created += OnEvent;
            _watcher.Renamed += OnEvent;
            _watcher.Deleted += OnEvent;
            _watcher.Error += (_, e) =>
            {
                // Events were lost (the kernel's queue overflowed, say): one of them may have been an edit.
                LogWatchError(e.GetException().Message);
                LookNow();
            };
            _watcher.EnableRaisingEvents = true;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            // No inotify left, say: reloads still work through SIGHUP and the admin API.
            LogWatchError(e.Message);
            _watcher?.Dispose();
            _watcher = null;
        }
    }

    /// <summary>Looks once now: the file may have changed while Fulcrum was starting.</summary>
    public void LookNow()
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _scheduled = true;
                _timer.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>Compares the content with the last seen, in case an event about it never came.</summary>
    private void Poll()
    {
        lock (_lock)
        {
            if (_disposed || _scheduled)
            {
                return;
            }
        }
        var hash = Hash();
        if (hash is not null && hash != Volatile.Read(ref _lastHash))
        {
            Schedule(ours: true);
        }
    }

    private void OnEvent(object sender, FileSystemEventArgs e)
    {
        var ours = IsConfigFile(e.Name);
        if (e.ChangeType == WatcherChangeTypes.Changed && !ours)
        {
            // A write to another file in the folder, an access log kept next to the configuration
            // say: not an edit, and at a write every few milliseconds it would push the debounced
            // look back for as long as traffic flows, so an edit would never be applied.
            return;
        }
        Schedule(ours);
    }

    /// <summary>A look after the quiet time (bounded by <see cref="MaxWait"/> for other files' events).</summary>
    private void Schedule(bool ours)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            var now = Environment.TickCount64;
            if (!ours && _firstOther == 0)
            {
                _firstOther = now;
            }
            var due = now + (long)Debounce.TotalMilliseconds;
            if (_firstOther != 0)
            {
                due = Math.Min(due, _firstOther + (long)MaxWait.TotalMilliseconds);
            }
            _scheduled = true;
            _timer.Change(TimeSpan.FromMilliseconds(Math.Max(0, due - now)), Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// The name of the configuration file, or of the file its symbolic link points to. Names, not
    /// paths: the watched folder and a link's target may spell the same folder differently (a
    /// folder that is itself a link), and a target elsewhere of the same name costs one more look.
    /// </summary>
    private bool IsConfigFile(string? name)
    {
        if (string.Equals(name, _name, StringComparison.Ordinal))
        {
            return true;
        }
        try
        {
            return File.ResolveLinkTarget(_path, returnFinalTarget: true) is { } target
                && string.Equals(name, target.Name, StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private async Task CheckAsync()
    {
        lock (_lock)
        {
            _firstOther = 0; // events from here on wait for a look of their own
            _scheduled = false; // and so does a difference the poll finds from here on
        }
        Interlocked.Increment(ref Looks);
        var hash = Hash();
        if (hash is null)
        {
            return; // gone for the moment (a rename in progress): the next event looks again
        }
        lock (_lock)
        {
            if (_disposed || hash == _lastHash)
            {
                return;
            }
            _lastHash = hash;
        }
        try
        {
            await _reload().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException)
        {
            LogWatchError(e.Message);
        }
    }

    private string? Hash()
    {
        try
        {
            return Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(_path)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [LoggerMessage(EventId = 13, Level = LogLevel.Warning, Message = "watching the configuration file failed ({Error}); reload with SIGHUP or `fulcrum reload`")]
    private partial void LogWatchError(string error);

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
        }
        _watcher?.Dispose();
        _poll.Dispose();
        _timer.Dispose();
    }
}
