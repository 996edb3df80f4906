using Fulcrum.Observability;
using Xunit;

namespace Fulcrum.Tests.Observability;

public class IdentityTableTests
{
    /// <summary>A key whose hash the test chooses, so collisions are certain rather than likely.</summary>
    private readonly struct Chosen(object value, int hash) : IIdentityKey<Chosen>
    {
        private readonly object _value = value;

        public int IdentityHash() => hash;

        public bool SameAs(in Chosen other) => ReferenceEquals(_value, other._value);
    }

    [Fact]
    public void Keys_that_share_a_slot_all_keep_their_entries()
    {
        // The fixed-slot tables this replaced kept one key a slot: two keys on one slot evicted
        // each other on every request.
        var table = new IdentityTable<Chosen, int>();
        var keys = Enumerable.Range(0, 200).Select(i => new Chosen(new object(), hash: 7)).ToArray();
        for (var i = 0; i < keys.Length; i++)
        {
            table.Add(keys[i], i);
        }
        for (var i = 0; i < keys.Length; i++)
        {
            Assert.True(table.TryGet(keys[i], out var value), $"key {i} was lost");
            Assert.Equal(i, value);
        }
    }

    [Fact]
    public void A_thousand_strings_are_each_found_by_identity_and_an_equal_copy_is_not()
    {
        var table = new IdentityTable<SameObject, string>();
        var names = Enumerable.Range(0, 1000).Select(i => $"backend-{i}").ToArray();
        foreach (var name in names)
        {
            table.Add(new SameObject(name), name.ToUpperInvariant());
        }
        foreach (var name in names)
        {
            Assert.True(table.TryGet(new SameObject(name), out var value));
            Assert.Equal(name.ToUpperInvariant(), value);
        }
        var copy = new string(names[5].AsSpan());
        Assert.False(table.TryGet(new SameObject(copy), out _));
    }

    [Fact]
    public void A_table_that_would_pass_its_largest_size_starts_over_and_keeps_the_newest_key()
    {
        var table = new IdentityTable<SameObject, int>(maxSlots: 128);
        var keys = Enumerable.Range(0, 65).Select(_ => new object()).ToArray();
        for (var i = 0; i < 64; i++)
        {
            table.Add(new SameObject(keys[i]), i);
        }
        Assert.True(table.TryGet(new SameObject(keys[0]), out _)); // 64 keys fit in 128 slots
        table.Add(new SameObject(keys[64]), 64);
        Assert.False(table.TryGet(new SameObject(keys[0]), out _));
        Assert.True(table.TryGet(new SameObject(keys[64]), out var newest));
        Assert.Equal(64, newest);
    }

    [Fact]
    public async Task Threads_adding_and_reading_at_once_never_see_a_wrong_value()
    {
        // Small enough to grow and start over many times while four threads race on it.
        var table = new IdentityTable<SameObject, int>(maxSlots: 256);
        var keys = Enumerable.Range(0, 300).Select(_ => new object()).ToArray();
        var wrong = 0;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            var random = new Random(t);
            for (var n = 0; n < 200_000; n++)
            {
                var i = random.Next(keys.Length);
                var key = new SameObject(keys[i]);
                if (!table.TryGet(key, out var value))
                {
                    table.Add(key, i);
                }
                else if (value != i)
                {
                    Interlocked.Increment(ref wrong);
                }
            }
        })));
        Assert.Equal(0, wrong);
    }
}
