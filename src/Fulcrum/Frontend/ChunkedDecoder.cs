using System.Buffers;
using Fulcrum.Forwarding;

namespace Fulcrum.Frontend;

/// <summary>What one step of <see cref="ChunkedDecoder"/> found.</summary>
internal enum ChunkResult
{
    /// <summary>More bytes are needed.</summary>
    NeedMore,

    /// <summary>Body bytes: the data slice of the input.</summary>
    Data,

    /// <summary>The last chunk and the trailers are in: the body is over.</summary>
    End,

    /// <summary>The chunked framing is broken: refuse, close, and never reuse an upstream connection it touched.</summary>
    Refused,
}

/// <summary>
/// A strict reader of a chunked request body (RFC 9112 §7.1): sizes in hex with no sign, no
/// space and at most 15 digits (no overflow), extensions only as tokens with optional token or
/// quoted values, every line ending in CRLF, each chunk's data followed by CRLF, and trailer
/// lines as strict as header lines. It copies nothing: each step says which bytes of its input
/// are body data. CVE-2025-55315 (a chunk extension ended by a bare LF, read differently by
/// Kestrel and proxies in front of it) is the case it exists for.
/// </summary>
internal sealed class ChunkedDecoder
{
    private const int MaxSizeDigits = 15;

    private static readonly SearchValues<byte> Hex = SearchValues.Create("0123456789abcdefABCDEF"u8);
    private static readonly SearchValues<byte> Token = SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    private readonly int _lineLimit;
    private State _state = State.Size;
    private long _left;
    private int _trailerBytes;

    /// <param name="lineLimit">The longest size line (with its extensions) and the most trailer bytes.</param>
    public ChunkedDecoder(int lineLimit = 8 * 1024)
    {
        _lineLimit = lineLimit;
    }

    private enum State
    {
        Size,
        Data,
        DataEnd,
        Trailers,
        Done,
    }

    /// <summary>Body bytes decoded so far.</summary>
    public long BodyBytes { get; private set; }

    /// <summary>
    /// One step over <paramref name="input"/>: consumes what it can, and for
    /// <see cref="ChunkResult.Data"/> returns where the data lies in the input.
    /// </summary>
    public ChunkResult Next(ReadOnlySpan<byte> input, out int consumed, out Slice data, out Refusal refusal)
    {
        consumed = 0;
        data = default;
        refusal = default;
        while (true)
        {
            var rest = input[consumed..];
            switch (_state)
            {
                case State.Size:
                {
                    var end = rest.IndexOf((byte)'\n');
                    if (end < 0)
                    {
                        return rest.Length > _lineLimit ? Refuse(out refusal, "a chunk size line is too long") : ChunkResult.NeedMore;
                    }
                    if (end == 0 || rest[end - 1] != '\r')
                    {
                        return Refuse(out refusal, "a chunk size line ends in a bare LF");
                    }
                    if (!SizeLine(rest[..(end - 1)], out _left, out var why))
                    {
                        return Refuse(out refusal, why);
                    }
                    consumed += end + 1;
                    _state = _left == 0 ? State.Trailers : State.Data;
                    continue;
                }
                case State.Data:
                {
                    if (rest.IsEmpty)
                    {
                        return ChunkResult.NeedMore;
                    }
                    var take = (int)Math.Min(_left, rest.Length);
                    data = new Slice(consumed, take);
                    consumed += take;
                    _left -= take;
                    BodyBytes += take;
                    if (_left == 0)
                    {
                        _state = State.DataEnd;
                    }
                    return ChunkResult.Data;
                }
                case State.DataEnd:
                {
                    if (rest.Length < 2)
                    {
                        return rest.Length == 1 && rest[0] != '\r' ? Refuse(out refusal, "a chunk's data is longer than its size") : ChunkResult.NeedMore;
                    }
                    if (rest[0] != '\r' || rest[1] != '\n')
                    {
                        return Refuse(out refusal, "a chunk's data is not followed by CRLF");
                    }
                    consumed += 2;
                    _state = State.Size;
                    continue;
                }
                case State.Trailers:
                {
                    var end = rest.IndexOf((byte)'\n');
                    if (end < 0)
                    {
                        return _trailerBytes + rest.Length > _lineLimit ? Refuse(out refusal, "the trailers are too large") : ChunkResult.NeedMore;
                    }
                    if (end == 0 || rest[end - 1] != '\r')
                    {
                        return Refuse(out refusal, "a trailer line ends in a bare LF");
                    }
                    _trailerBytes += end + 1;
                    if (_trailerBytes > _lineLimit)
                    {
                        return Refuse(out refusal, "the trailers are too large");
                    }
                    consumed += end + 1;
                    if (end == 1)
                    {
                        _state = State.Done;
                        return ChunkResult.End;
                    }
                    if (!TrailerLine(rest[..(end - 1)]))
                    {
                        return Refuse(out refusal, "a trailer line is not a valid header line");
                    }
                    continue;
                }
                default:
                    return ChunkResult.End;
            }
        }
    }

    /// <summary><c>1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )</c>.</summary>
    private static bool SizeLine(ReadOnlySpan<byte> line, out long size, out string why)
    {
        size = 0;
        why = "";
        var digits = line.IndexOfAnyExcept(Hex);
        if (digits < 0)
        {
            digits = line.Length;
        }
        if (digits == 0)
        {
            why = "a chunk size is not a hex number";
            return false;
        }
        if (digits > MaxSizeDigits)
        {
            why = "a chunk size is too large";
            return false;
        }
        foreach (var b in line[..digits])
        {
            size = (size << 4) | (long)HexValue(b);
        }
        var rest = line[digits..];
        while (!rest.IsEmpty)
        {
            rest = rest.TrimStart(" \t"u8);
            if (rest.IsEmpty || rest[0] != ';')
            {
                why = "a chunk size is followed by something that is not an extension";
                return false;
            }
            rest = rest[1..].TrimStart(" \t"u8);
            var name = rest.IndexOfAnyExcept(Token);
            if (name == 0 || rest.IsEmpty)
            {
                why = "a chunk extension has no name";
                return false;
            }
            rest = name < 0 ? [] : rest[name..];
            var afterName = rest.TrimStart(" \t"u8);
            if (afterName.IsEmpty || afterName[0] != '=')
            {
                rest = afterName;
                continue;
            }
            rest = afterName[1..].TrimStart(" \t"u8);
            if (!rest.IsEmpty && rest[0] == '"')
            {
                var closing = QuotedEnd(rest);
                if (closing < 0)
                {
                    why = "a chunk extension's quoted value is malformed";
                    return false;
                }
                rest = rest[(closing + 1)..];
                continue;
            }
            var value = rest.IndexOfAnyExcept(Token);
            if (value == 0 || rest.IsEmpty)
            {
                why = "a chunk extension has an empty value";
                return false;
            }
            rest = value < 0 ? [] : rest[value..];
        }
        return true;
    }

    /// <summary>The index of a quoted-string's closing quote (escapes honoured, no controls but HTAB), or -1.</summary>
    private static int QuotedEnd(ReadOnlySpan<byte> text)
    {
        for (var i = 1; i < text.Length; i++)
        {
            var b = text[i];
            if (b == '"')
            {
                return i;
            }
            if (b == '\\')
            {
                i++;
                if (i >= text.Length || text[i] is < 0x20 and not (byte)'\t' || text[i] == 0x7F)
                {
                    return -1;
                }
                continue;
            }
            if ((b < 0x20 && b != '\t') || b == 0x7F)
            {
                return -1;
            }
        }
        return -1;
    }

    private static bool TrailerLine(ReadOnlySpan<byte> line)
    {
        var nameEnd = line.IndexOfAnyExcept(Token);
        if (nameEnd <= 0 || line[nameEnd] != ':')
        {
            return false;
        }
        foreach (var b in line[(nameEnd + 1)..])
        {
            if ((b < 0x20 && b != '\t') || b == 0x7F)
            {
                return false;
            }
        }
        return true;
    }

    private static int HexValue(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;

    private static ChunkResult Refuse(out Refusal refusal, string message)
    {
        refusal = new Refusal(FulcrumError.BadRequest, message);
        return ChunkResult.Refused;
    }
}
