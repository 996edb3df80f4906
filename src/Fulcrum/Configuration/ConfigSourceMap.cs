using System.Runtime.CompilerServices;

namespace Fulcrum.Configuration;

/// <summary>
/// Where each configuration record and field was written, so that checks made after parsing
/// (a route naming a missing pool, a duplicate name) can still point at a line and column.
/// Records are keyed by reference: two equal records written in two places keep two locations.
/// </summary>
public sealed class ConfigSourceMap
{
    private readonly Dictionary<Key, (int Line, int Column)> _locations = new();

    public ConfigSourceMap(string file) => File = file;

    public string File { get; }

    private readonly HashSet<Key> _declaredItems = new();

    /// <summary>Records that a list field had items in the file, whether or not they parsed.</summary>
    internal void DeclareItems(object owner, string field) => _declaredItems.Add(new Key(owner, field));

    internal bool HasDeclaredItems(object owner, string field) => _declaredItems.Contains(new Key(owner, field));

    internal void Set(object owner, string field, int line, int column) => _locations[new Key(owner, field)] = (line, column);

    /// <summary>The location of <paramref name="field"/> of <paramref name="owner"/>, else of the owner, else the file's start.</summary>
    public (int Line, int Column) Get(object owner, string field = "") =>
        _locations.TryGetValue(new Key(owner, field), out var at) ? at
        : _locations.TryGetValue(new Key(owner, ""), out at) ? at
        : (1, 1);

    public ConfigError Error(object owner, string field, string message)
    {
        var (line, column) = Get(owner, field);
        return new ConfigError(File, line, column, message);
    }

    private readonly struct Key(object owner, string field) : IEquatable<Key>
    {
        private readonly object _owner = owner;
        private readonly string _field = field;

        public bool Equals(Key other) => ReferenceEquals(_owner, other._owner) && _field == other._field;

        public override bool Equals(object? obj) => obj is Key other && Equals(other);

        public override int GetHashCode() => HashCode.Combine(RuntimeHelpers.GetHashCode(_owner), _field);
    }
}
