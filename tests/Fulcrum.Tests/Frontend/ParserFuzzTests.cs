using System.Text;
using CsCheck;
using Fulcrum.Frontend;

namespace Fulcrum.Tests.Frontend;

/// <summary>
/// Property-based fuzzing of the request head parser, for a bounded time on every run: valid
/// requests mutated byte by byte never make it throw or loop, and whatever it accepts, the plain
/// reference reading accepts too, with the same method, target, headers and framing. A request
/// the two read differently is exactly what request smuggling is made of.
/// </summary>
public sealed class ParserFuzzTests
{
    private static readonly string[] Seeds =
    [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nX-Long: some value here\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/b HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ];

    // The bytes that matter to framing, and a few that do not.
    private static readonly byte[] Alphabet = Encoding.Latin1.GetBytes("\r\n \t:,;\"\0\u007f\u0080\u00ffaZ09-/=*Hh");

    private static readonly string[] Snippets =
    [
        "Content-Length: 7\r\n", "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip\r\n", "Host: b\r\n",
        "Content-Length: 5\r\n", "\r\n", "\n", " ", "Connection: close\r\n", "X: a\r\n folded\r\n", "HTTP/1.0", "chunked",
    ];

    /// <summary>One mutation of a seed: insert, delete, replace or duplicate bytes, or splice in a snippet.</summary>
    private static readonly Gen<byte[]> Mutated =
        Gen.Select(Gen.Int[0, Seeds.Length - 1], Gen.Int[1, 4], Gen.Int.Array[12])
            .Select(t =>
            {
                var (seed, count, random) = t;
                var bytes = new List<byte>(Encoding.Latin1.GetBytes(Seeds[seed]));
                for (var m = 0; m < count; m++)
                {
                    var kind = (uint)random[m * 3 % random.Length] % 5;
                    var at = (int)((uint)random[(m * 3 + 1) % random.Length] % (uint)(bytes.Count + 1));
                    var pick = (int)((uint)random[(m * 3 + 2) % random.Length] % 1000);
                    switch (kind)
                    {
                        case 0:
                            bytes.Insert(at, Alphabet[pick % Alphabet.Length]);
                            break;
                        case 1 when bytes.Count > 0:
                            bytes.RemoveAt(Math.Min(at, bytes.Count - 1));
                            break;
                        case 2 when bytes.Count > 0:
                            bytes[Math.Min(at, bytes.Count - 1)] = Alphabet[pick % Alphabet.Length];
                            break;
                        case 3:
                            bytes.InsertRange(at, Encoding.Latin1.GetBytes(Snippets[pick % Snippets.Length]));
                            break;
                        default:
                            var from = Math.Min(at, Math.Max(0, bytes.Count - 1));
                            var length = Math.Min(pick % 16, bytes.Count - from);
                            bytes.InsertRange(from, bytes.GetRange(from, length));
                            break;
                    }
                }
                return bytes.ToArray();
            });

    [Fact]
    public void Mutated_requests_never_throw_and_every_accepted_one_reads_as_the_reference_reads_it()
    {
        var head = new RequestHead();
        Mutated.Sample(bytes =>
        {
            var result = RequestHeadParser.Parse(bytes, FrontendLimits.Default, head, out _);
            if (result != ParseResult.Done)
            {
                return true;
            }
            var reference = ReferenceRequestReader.Read(bytes);
            if (reference is null)
            {
                return false; // accepted what a strict reading refuses
            }
            var same = reference.Method == Text(bytes, head.Method)
                && reference.Target == Text(bytes, head.Target)
                && reference.Minor == head.Minor
                && reference.HeadLength == head.Length
                && reference.Headers.Count == head.Count
                && reference.Framing == head.Framing switch { RequestFraming.Chunked => "chunked", RequestFraming.Length => "length", _ => "none" }
                && reference.Length == head.ContentLength;
            for (var i = 0; same && i < head.Count; i++)
            {
                same = reference.Headers[i].Name == Text(bytes, head.Name(i)) && reference.Headers[i].Value == Text(bytes, head.Value(i));
            }
            return same;
        }, time: 3, threads: 1, print: b => Encoding.Latin1.GetString(b).Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal));
    }

    [Fact]
    public void The_seeds_themselves_are_accepted_by_both_readings()
    {
        var head = new RequestHead();
        foreach (var seed in Seeds)
        {
            var bytes = Encoding.Latin1.GetBytes(seed);
            Assert.Equal(ParseResult.Done, RequestHeadParser.Parse(bytes, FrontendLimits.Default, head, out _));
            Assert.NotNull(ReferenceRequestReader.Read(bytes));
        }
    }

    private static string Text(byte[] bytes, Slice slice) => Encoding.Latin1.GetString(slice.Of(bytes));
}
