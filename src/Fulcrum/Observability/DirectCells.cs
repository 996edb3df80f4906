using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Fulcrum.Observability;

/// <summary>
/// The Prometheus exporter's cells of one per-request instrument, found by the identity of the
/// label values: they come from configuration and fixed sets (route and backend names, status
/// and error texts), so the same few string objects recur, and comparing references replaces
/// hashing and comparing text on every request (<see cref="IdentityTable{TKey, TValue}"/>). A miss (a new combination)
/// asks the exporter, which compares by value, so an equal string that is another object still
/// finds the same cell: a miss costs time, never a wrong count.
/// </summary>
internal sealed class DirectCells(PrometheusExporter exporter, Instrument instrument, params string[] names)
{
    private readonly IdentityTable<Labels, PrometheusExporter.Cell> _cells = new();

    public PrometheusExporter.Cell Get(string a, string b, string c = "", string d = "", string e = "")
    {
        var key = new Labels(a, b, c, d, e);
        if (!_cells.TryGet(key, out var cell))
        {
            cell = Lookup(a, b, c, d, e);
            _cells.Add(key, cell);
        }
        return cell;
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

    /// <summary>Up to five label values, compared by identity.</summary>
    private readonly struct Labels(string a, string b, string c, string d, string e) : IIdentityKey<Labels>
    {
        private readonly string _a = a;
        private readonly string _b = b;
        private readonly string _c = c;
        private readonly string _d = d;
        private readonly string _e = e;

        public int IdentityHash() =>
            (((((((RuntimeHelpers.GetHashCode(_a) * 31) + RuntimeHelpers.GetHashCode(_b)) * 31)
            + RuntimeHelpers.GetHashCode(_c)) * 31) + RuntimeHelpers.GetHashCode(_d)) * 31) + RuntimeHelpers.GetHashCode(_e);

        public bool SameAs(in Labels other) =>
            ReferenceEquals(_a, other._a) && ReferenceEquals(_b, other._b) && ReferenceEquals(_c, other._c)
            && ReferenceEquals(_d, other._d) && ReferenceEquals(_e, other._e);
    }
}
