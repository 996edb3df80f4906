using Fulcrum.Configuration;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Tls;

/// <summary>
/// Every certificate source the listeners use, each kept in step with its files: they are read
/// every <see cref="Interval"/> and compared by content (no file events are trusted, so a write
/// that an event misses, a rename over or a Kubernetes-style symlink swap is seen the same way).
/// New handshakes use a replaced certificate at once; open connections keep theirs.
/// </summary>
internal sealed partial class CertificateCatalog : IDisposable
{
    /// <summary>How often the files are read: a change serves within this plus a read.</summary>
    internal static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly Thread _reader;
    private readonly ManualResetEventSlim _stop = new();
    private readonly object _gate = new();
    private Dictionary<CertificateSourceConfig, CertificateSource> _sources = [];
    private long _generation;
    private int _checking;

    public CertificateCatalog(ILogger log, TimeProvider time)
    {
        _log = log;
        _time = time;
        // A thread of its own, not a timer on the thread pool: under a storm of handshakes the
        // pool's queue is long, and a renewed certificate must still serve within a second.
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "fulcrum-certificates" };
        _reader.Start();
    }

    private void ReadLoop()
    {
        while (!_stop.Wait(Interval))
        {
            Tick();
        }
    }

    /// <summary>Grows by one whenever any source's certificates change, so a listener knows to rebuild its SNI table.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>Fires for each certificate loaded, replaced, refused or removed (for metrics).</summary>
    public event Action<CertificateEvent>? Changed;

    public IReadOnlyCollection<CertificateSource> Sources
    {
        get
        {
            lock (_gate)
            {
                return [.. _sources.Values];
            }
        }
    }

    /// <summary>The source for <paramref name="config"/>, loaded now if it is new.</summary>
    public CertificateSource Get(CertificateSourceConfig config)
    {
        lock (_gate)
        {
            if (_sources.TryGetValue(config, out var source))
            {
                return source;
            }
        }
        var created = new CertificateSource(config);
        Report(created.Check(_time.GetUtcNow(), first: true));
        lock (_gate)
        {
            if (_sources.TryGetValue(config, out var raced))
            {
                return raced;
            }
            _sources = new Dictionary<CertificateSourceConfig, CertificateSource>(_sources) { [config] = created };
        }
        Interlocked.Increment(ref _generation);
        return created;
    }

    /// <summary>
    /// Takes the sources of <paramref name="config"/>'s listeners (a reload): new ones are loaded,
    /// kept ones are read again now, and ones no listener uses any more are dropped.
    /// </summary>
    public void Use(FulcrumConfig config)
    {
        var wanted = Load(config);
        lock (_gate)
        {
            _sources = _sources.Where(s => wanted.Contains(s.Key)).ToDictionary(s => s.Key, s => s.Value);
        }
        Tick();
        Interlocked.Increment(ref _generation);
    }

    /// <summary>Loads the sources of <paramref name="config"/>'s listeners that are new, dropping none (before a reload binds its listeners).</summary>
    public HashSet<CertificateSourceConfig> Load(FulcrumConfig config)
    {
        var wanted = config.Listeners.Where(l => l.Tls is not null).SelectMany(l => l.Tls!.Certificates).ToHashSet();
        foreach (var source in wanted)
        {
            Get(source);
        }
        return wanted;
    }

    private void Tick()
    {
        if (Interlocked.Exchange(ref _checking, 1) != 0)
        {
            return; // a slow disk: the check before this one is still reading
        }
        try
        {
            var now = _time.GetUtcNow();
            var changed = false;
            foreach (var source in Sources)
            {
                var events = source.Check(now);
                changed |= events.Exists(e => e.Kind is CertificateEventKind.Loaded or CertificateEventKind.Replaced or CertificateEventKind.Removed);
                Report(events);
            }
            if (changed)
            {
                Interlocked.Increment(ref _generation);
            }
        }
        catch (Exception e)
        {
            // A check must never stop the checks after it: log, and try again next tick.
            CheckFailed(e);
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    private void Report(List<CertificateEvent> events)
    {
        foreach (var e in events)
        {
            if (e.Kind == CertificateEventKind.Refused)
            {
                CertificateRefused(e.Message);
            }
            else
            {
                CertificateChanged(e.Message);
            }
            Changed?.Invoke(e);
        }
    }

    public void Dispose()
    {
        _stop.Set();
        _reader.Join(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 30, Level = LogLevel.Information, Message = "TLS certificate: {Message}")]
    private partial void CertificateChanged(string message);

    [LoggerMessage(EventId = 31, Level = LogLevel.Error, Message = "TLS certificate not loaded: {Message}")]
    private partial void CertificateRefused(string message);

    [LoggerMessage(EventId = 32, Level = LogLevel.Error, Message = "TLS certificate check failed; trying again")]
    private partial void CheckFailed(Exception e);
}
