namespace Fulcrum.Observability;

/// <summary>A key compared by the identity of the objects in it (<see cref="IdentityTable{TKey, TValue}"/>).</summary>
internal interface IIdentityKey<TKey>
    where TKey : struct
{
    /// <summary>A hash of the objects' identities (<see cref="System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode"/>), not of their contents.</summary>
    int IdentityHash();

    /// <summary>True when both keys hold the very same objects.</summary>
    bool SameAs(in TKey other);
}

/// <summary>
/// A lookup for values derived from objects that recur as the same instances on every request
/// (names from configuration, texts from fixed sets): a hash read and reference compares, no lock,
/// no hashing of text. Open addressing with linear probing, kept at most half full and grown by
/// copying into a table twice the size, so every live key keeps its entry: two keys that share a
/// slot cost one more probe, never a miss per request (a table of fixed slots, one key each, had
/// two such keys evict each other on every request in about one process in ten, and every key of
/// a pool of a thousand backends). Reads never lock. A miss is rare and may race another; the
/// loser's entry is lost, which costs one more miss later, never a wrong value. Keys that stop
/// recurring (a reload replaced their strings) stay until the table would pass its largest size;
/// then it starts over empty and the live keys come back one miss each.
/// </summary>
internal sealed class IdentityTable<TKey, TValue>(int maxSlots = 1 << 16)
    where TKey : struct, IIdentityKey<TKey>
{
    private const int FirstSize = 64; // a power of two, as every size is

    private Table _table = new(FirstSize);

    public bool TryGet(in TKey key, out TValue value)
    {
        var slots = _table.Slots; // one read: a grown table is published whole
        var mask = slots.Length - 1;
        for (var i = key.IdentityHash() & mask; ; i = (i + 1) & mask)
        {
            var entry = slots[i];
            if (entry is null)
            {
                value = default!;
                return false; // at most half full: an empty slot ends every probe
            }
            if (entry.Key.SameAs(key))
            {
                value = entry.Value;
                return true;
            }
        }
    }

    /// <summary>Adds <paramref name="key"/> (after <see cref="TryGet"/> missed it).</summary>
    public void Add(in TKey key, TValue value)
    {
        var table = _table;
        if ((table.Count + 1) * 2 > table.Slots.Length)
        {
            table = table.Slots.Length * 2 > maxSlots ? new Table(FirstSize) : table.Grown();
            _table = table;
        }
        table.Insert(new Entry(key, value));
    }

    private sealed class Entry(TKey key, TValue value)
    {
        public readonly TKey Key = key;
        public readonly TValue Value = value;
    }

    private sealed class Table(int size)
    {
        public readonly Entry?[] Slots = new Entry?[size];
        public int Count;

        public void Insert(Entry entry)
        {
            var mask = Slots.Length - 1;
            var i = entry.Key.IdentityHash() & mask;
            while (Slots[i] is { } other && !other.Key.SameAs(entry.Key))
            {
                i = (i + 1) & mask;
            }
            Slots[i] = entry; // one reference write: a reader sees the slot empty or this entry, whole
            Interlocked.Increment(ref Count);
        }

        public Table Grown()
        {
            var grown = new Table(Slots.Length * 2);
            foreach (var entry in Slots)
            {
                if (entry is not null)
                {
                    grown.Insert(entry);
                }
            }
            return grown;
        }
    }
}

/// <summary>One object as an <see cref="IIdentityKey{TKey}"/>: a string from configuration, say.</summary>
internal readonly struct SameObject(object value) : IIdentityKey<SameObject>
{
    private readonly object _value = value;

    public int IdentityHash() => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(_value);

    public bool SameAs(in SameObject other) => ReferenceEquals(_value, other._value);
}
