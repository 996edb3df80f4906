using System.Text;
using Fulcrum.Frontend;

namespace Fulcrum.Tests.Frontend;

/// <summary>The strict chunked body reader: whole bodies in any split, and every malformed chunk refused.</summary>
public sealed class ChunkedDecoderTests
{
    /// <summary>Feeds <paramref name="text"/> in pieces of <paramref name="piece"/> bytes; the body, or null when refused.</summary>
    private static (string? Body, string Why) Decode(string text, int piece = int.MaxValue)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        var decoder = new ChunkedDecoder();
        var body = new StringBuilder();
        var pending = new List<byte>();
        var fed = 0;
        while (true)
        {
            var input = pending.ToArray();
            var result = decoder.Next(input, out var consumed, out var data, out var refusal);
            if (result == ChunkResult.Refused)
            {
                return (null, refusal.Message);
            }
            if (result == ChunkResult.Data)
            {
                body.Append(Encoding.Latin1.GetString(data.Of(input)));
            }
            pending.RemoveRange(0, consumed);
            if (result == ChunkResult.End)
            {
                return (body.ToString(), "");
            }
            if (result == ChunkResult.NeedMore)
            {
                if (fed == bytes.Length)
                {
                    return (null, "incomplete");
                }
                var take = Math.Min(piece, bytes.Length - fed);
                pending.AddRange(bytes.AsSpan(fed, take).ToArray());
                fed += take;
            }
        }
    }

    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(1)]
    [InlineData(3)]
    public void A_body_decodes_whole_however_it_is_split(int piece)
    {
        var text = "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n6;name=value;flag;q=\"a \\\" b\"\r\n world\r\n0\r\nTrailer-One: x\r\n\r\n";
        Assert.Equal(("helloabcdefghijklmnopqrstuvwxyz world", ""), Decode(text, piece));
    }

    [Theory]
    [InlineData("5\nhello\r\n0\r\n\r\n", "bare LF")]
    [InlineData("5;ext\nhello\r\n0\r\n\r\n", "bare LF")]
    [InlineData("5\r\nhello\n0\r\n\r\n", "not followed by CRLF")]
    [InlineData("5\r\nhelloXX\r\n0\r\n\r\n", "not followed by CRLF")]
    [InlineData("-5\r\nhello\r\n0\r\n\r\n", "not a hex number")]
    [InlineData("+5\r\nhello\r\n0\r\n\r\n", "not a hex number")]
    [InlineData(" 5\r\nhello\r\n0\r\n\r\n", "not a hex number")]
    [InlineData("0x5\r\nhello\r\n0\r\n\r\n", "not an extension")]
    [InlineData("5 5\r\nhello\r\n0\r\n\r\n", "not an extension")]
    [InlineData("1000000000000000\r\n", "too large")]
    [InlineData("5;\r\nhello\r\n0\r\n\r\n", "no name")]
    [InlineData("5;a=\r\nhello\r\n0\r\n\r\n", "empty value")]
    [InlineData("5;a=\"open\r\nhello\r\n0\r\n\r\n", "quoted value")]
    [InlineData("5;a=\"x\u0001\"\r\nhello\r\n0\r\n\r\n", "quoted value")]
    [InlineData("5\r\nhello\r\n0\r\nBad Trailer: x\r\n\r\n", "trailer line")]
    [InlineData("5\r\nhello\r\n0\r\nX: a\u0000\r\n\r\n", "trailer line")]
    [InlineData("5\r\nhello\r\n0\r\nX: a\n\r\n", "bare LF")]
    public void Malformed_chunks_are_refused(string text, string said)
    {
        var (body, why) = Decode(text);
        Assert.Null(body);
        Assert.Contains(said, why, StringComparison.Ordinal);
    }

    [Fact]
    public void A_size_line_longer_than_the_limit_is_refused_before_it_ends() =>
        Assert.Contains("too long", Decode("5;" + new string('a', 9000)).Why, StringComparison.Ordinal);
}
