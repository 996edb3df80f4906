using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Fulcrum.Observability;

/// <summary>
/// The Prometheus exporter's cells of one per-request instrument, found by the identity of the
/// label values: they come from configuration and fixed sets (route and backend names, status
/// and error texts), so the same few string objects recur, and comparing references replaces
/// hashing and comparing text on every request. A miss (a new combination, or two sharing a slot)
/// asks the exporter, which compares by value, so an equal string that is another object still
/// finds the same cell: a miss costs time, never a wrong count.
/// </summary>
internal sealed class DirectCells(PrometheusExporter exporter, Instrument instrument, params string[] names)
{
    private const int Slots = 256; // a power of two

    private readonly Entry?[] _entries = new Entry?[Slots];

    public PrometheusExporter.Cell Get(string a, string b, string c = "", string d = "", string e = "")
    {
        var slot = ((((((RuntimeHelpers.GetHashCode(a) * 31) + RuntimeHelpers.GetHashCode(b)) * 31)
            + RuntimeHelpers.GetHashCode(c)) * 31 + RuntimeHelpers.GetHashCode(d)) * 31 + RuntimeHelpers.GetHashCode(e)) & (Slots - 1);
        var entry = _entries[slot];
        if (entry is not null && ReferenceEquals(entry.A, a) && ReferenceEquals(entry.B, b) && ReferenceEquals(entry.C, c)
            && ReferenceEquals(entry.D, d) && ReferenceEquals(entry.E, e))
        {
            return entry.Cell;
        }
        entry = new Entry(a, b, c, d, e, Lookup(a, b, c, d, e));
        _entries[slot] = entry; // one reference write: a reader sees the old entry or the new one
        return entry.Cell;
    }

    private PrometheusExporter.Cell Lookup(string a, string b, string c, string d, string e)
    {
        Span<KeyValuePair<string, object?>> tags =
        [
            new(names[0], a),
            new(names[1], b),
            new(names.Length > 2 ? names[2] : "", c),
            new(names.Length > 3 ? names[3] : "", d),
            new(names.Length > 4 ? names[4] : "", e),
        ];
        return exporter.CellFor(instrument, tags[..names.Length]);
    }

    private sealed class Entry(string a, string b, string c, string d, string e, PrometheusExporter.Cell cell)
    {
        public readonly string A = a;
        public readonly string B = b;
        public readonly string C = c;
        public readonly string D = d;
        public readonly string E = e;
        public readonly PrometheusExporter.Cell Cell = cell;
    }
}
