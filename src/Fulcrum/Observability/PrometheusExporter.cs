using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Fulcrum.Observability;

/// <summary>
/// Aggregates the measurements of one <see cref="Meter"/> and writes them in the Prometheus text
/// format (version 0.0.4). Counters and histograms are summed per tag set as they are recorded;
/// observable instruments are read at scrape time. Only this server's meter is listened to, so
/// several servers in one process (tests, an embedding app) do not mix their numbers.
/// </summary>
internal sealed class PrometheusExporter : IDisposable
{
    /// <summary>Histogram buckets in seconds: 1 ms to 60 s.</summary>
    internal static readonly double[] Buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly Meter _meter;
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<Instrument, Series> _series = new();
    private readonly object _scrapeLock = new();
    private List<(Instrument Instrument, TagValues Tags, double Value)>? _observed;

    public PrometheusExporter(Meter meter)
    {
        _meter = meter;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter, _meter))
            {
                // The series rides along as the listener's state: no lookup by instrument per measurement.
                listener.EnableMeasurementEvents(instrument, _series.GetOrAdd(instrument, static i => new Series(i)));
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, value, tags, state) => Record(i, value, tags, (Series)state!));
        _listener.SetMeasurementEventCallback<int>((i, value, tags, state) => Record(i, value, tags, (Series)state!));
        _listener.SetMeasurementEventCallback<double>((i, value, tags, state) => Record(i, value, tags, (Series)state!));
        _listener.Start();
    }

    /// <summary>
    /// From now on <paramref name="instruments"/> are recorded by their owner straight into
    /// <see cref="CellFor"/>'s cells, not through this listener: their measurement events stop
    /// here, so nothing is counted twice, and reach only other listeners (an OpenTelemetry
    /// pipeline), whose subscription is what makes <see cref="Instrument.Enabled"/> true.
    /// </summary>
    internal void RecordDirectly(IEnumerable<Instrument> instruments)
    {
        foreach (var instrument in instruments)
        {
            _listener.DisableMeasurementEvents(instrument);
        }
    }

    /// <summary>The running total of <paramref name="instrument"/> for one tag set, made when new.</summary>
    internal Cell CellFor(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        return _series.GetOrAdd(instrument, static i => new Series(i)).CellFor(tags);
    }

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, Series series)
    {
        var observed = _observed;
        if (observed is not null && instrument.IsObservable)
        {
            observed.Add((instrument, new TagValues(tags), value));
            return;
        }
        series.CellFor(tags).Add(value);
    }

    /// <summary>Writes every series: what was recorded so far, and the observable instruments now.</summary>
    public string Scrape()
    {
        lock (_scrapeLock)
        {
            _observed = [];
            _listener.RecordObservableInstruments();
            var observed = _observed;
            _observed = null;

            var text = new StringBuilder(4096);
            // Every instrument has a series from the start; one with nothing recorded yet is left out.
            var instruments = _series.Where(s => !s.Value.Cells.IsEmpty).Select(s => s.Key)
                .Concat(observed.Select(o => o.Instrument)).Distinct().OrderBy(i => i.Name, StringComparer.Ordinal);
            foreach (var instrument in instruments)
            {
                var histogram = instrument is Histogram<double>;
                var type = histogram ? "histogram" : instrument is Counter<long> or ObservableCounter<long> ? "counter" : "gauge";
                text.Append("# HELP ").Append(instrument.Name).Append(' ').Append(instrument.Description).Append('\n');
                text.Append("# TYPE ").Append(instrument.Name).Append(' ').Append(type).Append('\n');
                if (_series.TryGetValue(instrument, out var series))
                {
                    foreach (var (tags, cell) in series.Cells.OrderBy(c => c.Key.ToString(), StringComparer.Ordinal))
                    {
                        cell.Write(text, instrument.Name, tags);
                    }
                }
                foreach (var (_, tags, value) in observed.Where(o => o.Instrument == instrument))
                {
                    Line(text, instrument.Name, tags, null, value);
                }
            }
            return text.ToString();
        }
    }

    internal static void Line(StringBuilder text, string name, TagValues tags, string? le, double value)
    {
        text.Append(name);
        tags.WriteLabels(text, le);
        text.Append(' ').Append(Format(value)).Append('\n');
    }

    internal static string Format(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : value.ToString("G17", CultureInfo.InvariantCulture);

    public void Dispose() => _listener.Dispose();

    private sealed class Series
    {
        public Series(Instrument instrument)
        {
            IsHistogram = instrument is Histogram<double>;
            IsIntegral = instrument is Counter<long> or Counter<int> or UpDownCounter<long> or UpDownCounter<int>;
            ByTags = Cells.GetAlternateLookup<ReadOnlySpan<KeyValuePair<string, object?>>>();
        }

        public bool IsHistogram { get; }

        /// <summary>A counter of whole numbers, summed as a long.</summary>
        public bool IsIntegral { get; }

        public ConcurrentDictionary<TagValues, Cell> Cells { get; } = new(TagValues.Comparer);

        /// <summary>The same cells, found by a measurement's span of tags.</summary>
        public ConcurrentDictionary<TagValues, Cell>.AlternateLookup<ReadOnlySpan<KeyValuePair<string, object?>>> ByTags { get; }

        /// <summary>
        /// The cell of one tag set, looked up by the span itself: an existing one costs no
        /// allocation, which matters at several measurements per request. Only a new tag set is
        /// copied into a key.
        /// </summary>
        public Cell CellFor(ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
            ByTags.TryGetValue(tags, out var cell) ? cell
            : Cells.GetOrAdd(new TagValues(tags), static (_, s) => new Cell(s.IsHistogram, s.IsIntegral), this);
    }

    /// <summary>The running total of one tag set; for a histogram, its bucket counts, sum and count.</summary>
    internal sealed class Cell(bool histogram, bool integral)
    {
        private readonly long[]? _buckets = histogram ? new long[Buckets.Length] : null;
        private long _count;
        private double _sum;
        private long _integralSum;

        public void Add(double value)
        {
            if (integral)
            {
                // A counter of whole numbers: one atomic add, not a compare-and-swap loop.
                Interlocked.Add(ref _integralSum, (long)value);
                return;
            }
            if (_buckets is not null)
            {
                for (var i = 0; i < Buckets.Length; i++)
                {
                    if (value <= Buckets[i])
                    {
                        Interlocked.Increment(ref _buckets[i]);
                        break;
                    }
                }
                Interlocked.Increment(ref _count);
            }
            // Lock-free add of a double.
            double seen, updated;
            do
            {
                seen = Volatile.Read(ref _sum);
                updated = seen + value;
            }
            while (Interlocked.CompareExchange(ref _sum, updated, seen) != seen);
        }

        public void Write(StringBuilder text, string name, TagValues tags)
        {
            if (_buckets is null)
            {
                Line(text, name, tags, null, integral ? Interlocked.Read(ref _integralSum) : Volatile.Read(ref _sum));
                return;
            }
            var cumulative = 0L;
            for (var i = 0; i < Buckets.Length; i++)
            {
                cumulative += Interlocked.Read(ref _buckets[i]);
                Line(text, name + "_bucket", tags, Format(Buckets[i]), cumulative);
            }
            var count = Interlocked.Read(ref _count);
            Line(text, name + "_bucket", tags, "+Inf", count);
            Line(text, name + "_sum", tags, null, Volatile.Read(ref _sum));
            Line(text, name + "_count", tags, null, count);
        }
    }
}

/// <summary>
/// A measurement's tags as stored names and values, in the order they were given, compared by
/// value. <see cref="Comparer"/> also compares a stored set with a measurement's span of tags, so
/// looking up an existing series allocates nothing.
/// </summary>
internal readonly struct TagValues : IEquatable<TagValues>
{
    public static readonly TagComparer Comparer = new();

    private readonly KeyValuePair<string, string>[] _tags;
    private readonly int _hash;

    public TagValues(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        _tags = new KeyValuePair<string, string>[tags.Length];
        for (var i = 0; i < tags.Length; i++)
        {
            _tags[i] = new KeyValuePair<string, string>(tags[i].Key, ValueOf(tags[i]));
        }
        _hash = Hash(tags);
    }

    /// <summary>A tag's value as text; Fulcrum's values are strings already, so this rarely allocates.</summary>
    internal static string ValueOf(in KeyValuePair<string, object?> tag) => tag.Value as string ?? tag.Value?.ToString() ?? "";

    /// <summary>
    /// A cheap hash of a tag set: the lengths and a few characters of each key and value. An
    /// instrument has tens of tag sets at most, so a weak hash costs a rare extra comparison
    /// (equality is exact), while hashing every string in full cost more on each measurement.
    /// </summary>
    internal static int Hash(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var hash = tags.Length;
        foreach (var tag in tags)
        {
            hash = (hash * 31) + Sample(tag.Key);
            hash = (hash * 31) + Sample(ValueOf(tag));
        }
        return hash;
    }

    private static int Sample(string text) => text.Length == 0 ? 0
        : (text.Length * 65_599) ^ text[0] ^ (text[^1] << 8) ^ (text[text.Length >> 1] << 16);

    internal bool Matches(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (_tags.Length != tags.Length)
        {
            return false;
        }
        for (var i = 0; i < _tags.Length; i++)
        {
            if (_tags[i].Key != tags[i].Key || _tags[i].Value != ValueOf(tags[i]))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Compares tag sets with each other, and with a measurement's span of tags.</summary>
    internal sealed class TagComparer : IEqualityComparer<TagValues>, IAlternateEqualityComparer<ReadOnlySpan<KeyValuePair<string, object?>>, TagValues>
    {
        public bool Equals(TagValues x, TagValues y) => x.Equals(y);

        public int GetHashCode(TagValues obj) => obj._hash;

        public bool Equals(ReadOnlySpan<KeyValuePair<string, object?>> alternate, TagValues other) => other.Matches(alternate);

        public int GetHashCode(ReadOnlySpan<KeyValuePair<string, object?>> alternate) => Hash(alternate);

        public TagValues Create(ReadOnlySpan<KeyValuePair<string, object?>> alternate) => new(alternate);
    }

    public bool Equals(TagValues other)
    {
        if (_tags.Length != other._tags.Length)
        {
            return false;
        }
        for (var i = 0; i < _tags.Length; i++)
        {
            if (_tags[i].Key != other._tags[i].Key || _tags[i].Value != other._tags[i].Value)
            {
                return false;
            }
        }
        return true;
    }

    public override bool Equals(object? obj) => obj is TagValues other && Equals(other);

    public override int GetHashCode() => _hash;

    public override string ToString() => string.Join(",", _tags.Select(t => $"{t.Key}={t.Value}"));

    public void WriteLabels(StringBuilder text, string? le)
    {
        if (_tags.Length == 0 && le is null)
        {
            return;
        }
        text.Append('{');
        var first = true;
        foreach (var (key, value) in _tags)
        {
            if (!first)
            {
                text.Append(',');
            }
            first = false;
            text.Append(key).Append("=\"");
            Escape(text, value);
            text.Append('"');
        }
        if (le is not null)
        {
            text.Append(first ? "" : ",").Append("le=\"").Append(le).Append('"');
        }
        text.Append('}');
    }

    private static void Escape(StringBuilder text, string value)
    {
        foreach (var c in value)
        {
            switch (c)
            {
                case '\\': text.Append("\\\\"); break;
                case '"': text.Append("\\\""); break;
                case '\n': text.Append("\\n"); break;
                default: text.Append(c); break;
            }
        }
    }
}
