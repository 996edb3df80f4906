using Fulcrum.Configuration;

namespace Fulcrum.Tls;

/// <summary>
/// One entry of <c>listeners[].tls.certificates</c> (a certificate with its key, or a folder of
/// them), kept in step with its files. <see cref="Check"/> reads the files and compares their
/// bytes with what is serving, so an in-place write, a rename over and a symlink swap are all
/// seen, whatever file events were or were not delivered.
/// </summary>
/// <remarks>
/// A change that loads replaces its certificate at once. A change that does not (a file that does
/// not parse, a key that is not the certificate's, a certificate already expired) keeps the old
/// certificate serving; it is reported only once the same bytes are seen again
/// <see cref="Settle"/> later, because a writer that truncates and writes, or writes the
/// certificate before its key, passes through such states on the way to a good pair.
/// </remarks>
internal sealed class CertificateSource(CertificateSourceConfig config)
{
    /// <summary>How long a failing content must stay the same before it is reported.</summary>
    internal static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(200);

    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private volatile IReadOnlyList<LoadedCertificate> _current = [];

    public CertificateSourceConfig Config { get; } = config;

    /// <summary>The certificates serving now, in file order.</summary>
    public IReadOnlyList<LoadedCertificate> Current => _current;

    /// <summary>The last change's outcome per file: null while it is serving what is on disk, else why the disk's version is not.</summary>
    public IReadOnlyDictionary<string, string?> Problems
    {
        get
        {
            lock (_entries)
            {
                return _entries.ToDictionary(e => e.Key, e => e.Value.Problem, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>When a certificate of this source was last replaced.</summary>
    public DateTimeOffset? ChangedAt { get; private set; }

    /// <summary>
    /// Reads the files and applies what changed. Returns what happened, one sentence each (a
    /// replaced certificate, a change refused), for the log; empty when nothing did.
    /// </summary>
    /// <param name="now">The time, for the settle rule.</param>
    /// <param name="first">The first load: an expired certificate is served (with a warning) rather than refused.</param>
    public List<CertificateEvent> Check(DateTimeOffset now, bool first = false)
    {
        var events = new List<CertificateEvent>();
        List<(string Cert, string Key)> files;
        if (Config.Dir is { } dir)
        {
            try
            {
                files = CertificateFiles.InFolder(dir);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                lock (_entries)
                {
                    if (_entries.Count == 0 || first)
                    {
                        events.Add(new CertificateEvent(dir, CertificateEventKind.Refused, $"cannot read the folder {dir}: {e.Message}", null));
                    }
                }
                return events; // keep what serves; a folder that is being swapped comes back
            }
        }
        else
        {
            files = [(Config.Cert!, Config.Key ?? Config.Cert!)];
        }
        var changed = false;
        lock (_entries)
        {
            foreach (var (cert, key) in files)
            {
                if (!_entries.TryGetValue(cert, out var entry))
                {
                    entry = new Entry();
                    _entries[cert] = entry;
                }
                changed |= entry.Check(cert, key, Config.KeyPasswordFile, now, first || entry.Serving is null, events);
            }
            foreach (var gone in _entries.Keys.Where(k => !files.Exists(f => f.Cert == k)).ToList())
            {
                if (_entries[gone].Serving is not null)
                {
                    changed = true;
                    events.Add(new CertificateEvent(gone, CertificateEventKind.Removed, $"{gone} is gone from its folder: its certificate no longer serves", null));
                }
                _entries.Remove(gone);
            }
            if (changed)
            {
                _current = [.. files.Select(f => _entries[f.Cert].Serving).OfType<LoadedCertificate>()];
                ChangedAt = now;
            }
        }
        return events;
    }

    /// <summary>One certificate file of the source, what serves from it and what its disk holds.</summary>
    private sealed class Entry
    {
        private string? _applied;   // the signature of what serves
        private string? _pending;   // a failing signature seen once, and when
        private DateTimeOffset _pendingSince;
        private string? _reported;  // the failing signature last reported

        public LoadedCertificate? Serving { get; private set; }

        public string? Problem { get; private set; }

        public bool Check(string cert, string key, string? passwordFile, DateTimeOffset now, bool acceptExpired, List<CertificateEvent> events)
        {
            var contents = CertificateFiles.Read(cert, key, passwordFile, out var error);
            var signature = contents?.Signature() ?? "unreadable: " + error;
            if (signature == _applied)
            {
                Problem = null;
                _pending = null;
                return false;
            }
            if (signature == _reported)
            {
                return false;
            }
            LoadedCertificate? loaded = null;
            if (contents is not null)
            {
                loaded = CertificateFiles.Load(cert, key, contents, out error);
                if (loaded is not null && loaded.NotAfter <= now && !acceptExpired)
                {
                    error = $"{cert} expired on {loaded.NotAfter:yyyy-MM-dd HH:mm} UTC";
                    loaded = null;
                }
            }
            if (loaded is not null)
            {
                var replaced = Serving is not null;
                Serving = loaded;
                _applied = signature;
                _pending = _reported = Problem = null;
                var expired = loaded.NotAfter <= now ? $"; it EXPIRED on {loaded.NotAfter:yyyy-MM-dd} and clients will refuse it" : "";
                events.Add(new CertificateEvent(cert, replaced ? CertificateEventKind.Replaced : CertificateEventKind.Loaded,
                    $"{cert}: {(replaced ? "new certificate serving" : "serving")} {string.Join(", ", loaded.Names)} until {loaded.NotAfter:yyyy-MM-dd HH:mm} UTC{expired}", loaded));
                return true;
            }
            // The first look at a file that fails is reported at once (there is nothing older to
            // keep serving and no writer to wait for); a later one once it has settled.
            if (Serving is not null && (signature != _pending || now - _pendingSince < Settle))
            {
                if (signature != _pending)
                {
                    _pending = signature;
                    _pendingSince = now;
                }
                return false;
            }
            _reported = signature;
            _pending = null;
            Problem = error;
            events.Add(new CertificateEvent(cert, CertificateEventKind.Refused,
                Serving is null ? error! : $"{error}; the certificate loaded before keeps serving", null));
            return false;
        }
    }
}

internal enum CertificateEventKind
{
    Loaded,
    Replaced,
    Refused,
    Removed,
}

/// <summary>Something that happened to a certificate file, in a sentence for the log.</summary>
internal sealed record CertificateEvent(string File, CertificateEventKind Kind, string Message, LoadedCertificate? Certificate);
