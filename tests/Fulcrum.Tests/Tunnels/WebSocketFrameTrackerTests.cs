using System.Buffers.Binary;
using Fulcrum.Forwarding;

namespace Fulcrum.Tests.Tunnels;

public sealed class WebSocketFrameTrackerTests
{
    private static byte[] Frame(int opcode, int length, bool masked, bool fin = true)
    {
        var header = new List<byte> { (byte)((fin ? 0x80 : 0) | opcode) };
        var maskBit = masked ? 0x80 : 0;
        if (length < 126)
        {
            header.Add((byte)(maskBit | length));
        }
        else if (length <= ushort.MaxValue)
        {
            header.Add((byte)(maskBit | 126));
            var ext = new byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(ext, (ushort)length);
            header.AddRange(ext);
        }
        else
        {
            header.Add((byte)(maskBit | 127));
            var ext = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(ext, (ulong)length);
            header.AddRange(ext);
        }
        if (masked)
        {
            header.AddRange(new byte[] { 1, 2, 3, 4 });
        }
        // Payload bytes that look like frame headers, to catch a tracker that reads into payloads.
        return [.. header, .. Enumerable.Repeat((byte)0x88, length)];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(4096)]
    public void Knows_the_frame_boundaries_however_the_bytes_are_split(int seed)
    {
        var frames = new[]
        {
            Frame(0x1, 0, masked: false), Frame(0x2, 125, masked: true), Frame(0x1, 126, masked: false),
            Frame(0x0, 65_535, masked: true, fin: false), Frame(0x9, 4, masked: true), Frame(0x0, 70_000, masked: false),
            Frame(0xA, 0, masked: false),
        };
        var stream = frames.SelectMany(f => f).ToArray();
        var ends = new HashSet<int>();
        var at = 0;
        foreach (var f in frames)
        {
            at += f.Length;
            ends.Add(at);
        }
        var random = new Random(seed);
        var tracker = new WebSocketFrameTracker();
        var fed = 0;
        while (fed < stream.Length)
        {
            var take = Math.Min(stream.Length - fed, random.Next(1, seed + 1));
            tracker.Feed(stream.AsSpan(fed, take));
            fed += take;
            Assert.Equal(ends.Contains(fed), tracker.AtBoundary);
        }
        Assert.False(tracker.CloseSeen);
        Assert.False(tracker.Lost);
    }

    [Fact]
    public void Notes_a_close_frame_passing()
    {
        var tracker = new WebSocketFrameTracker();
        tracker.Feed(Frame(0x1, 3, masked: true));
        Assert.False(tracker.CloseSeen);
        tracker.Feed(WebSocketFrames.Close(1000, "bye", masked: true));
        Assert.True(tracker.CloseSeen);
        Assert.True(tracker.AtBoundary);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Fulcrums_close_frame_is_a_well_formed_1001(bool masked)
    {
        var frame = WebSocketFrames.Close(WebSocketFrames.GoingAway, "going away", masked);
        Assert.Equal(0x88, frame[0]);
        Assert.Equal(masked, (frame[1] & 0x80) != 0);
        var length = frame[1] & 0x7F;
        var payload = frame.AsSpan(masked ? 6 : 2).ToArray();
        Assert.Equal(length, payload.Length);
        if (masked)
        {
            for (var i = 0; i < payload.Length; i++)
            {
                payload[i] ^= frame[2 + (i & 3)];
            }
        }
        Assert.Equal(1001, BinaryPrimitives.ReadUInt16BigEndian(payload));
        Assert.Equal("going away", System.Text.Encoding.UTF8.GetString(payload, 2, payload.Length - 2));
    }

    [Fact]
    public void The_accept_key_matches_rfc_6455s_example()
    {
        Assert.Equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", WebSocketFrames.AcceptFor("dGhlIHNhbXBsZSBub25jZQ=="));
    }
}
