using System.Buffers;
using System.Buffers.Text;
using System.Text;
using Microsoft.Extensions.Primitives;

namespace Fulcrum.Forwarding.Http1;

/// <summary>How a response body ends (RFC 9112 §6.3).</summary>
internal enum BodyFraming
{
    /// <summary>No body: HEAD, 1xx, 204, 304.</summary>
    None,

    /// <summary>Content-Length bytes.</summary>
    Length,

    /// <summary>Chunked transfer coding, then trailers.</summary>
    Chunked,

    /// <summary>Until the backend closes the connection; the connection cannot be kept.</summary>
    UntilClose,
}

/// <summary>A response that breaks HTTP/1.1's rules; the message is the whole detail an operator reads.</summary>
internal sealed class UpstreamProtocolException(string message) : HttpRequestException(HttpRequestError.InvalidResponse, message);

/// <summary>
/// A backend's response head, parsed strictly: a status line of HTTP/1.0 or HTTP/1.1 and a
/// three-digit status; header names that are tokens with no space before the colon (a space there
/// is how responses are smuggled, RFC 9112 §5.1); no line folding; no control characters but tab
/// in a value; Content-Length a number, and several only when they agree; and the framing decided
/// once from those. Whatever breaks a rule is an invalid response (<c>upstream_protocol_error</c>),
/// never a guess. Header values are read as Latin-1, byte for byte, as Kestrel reads requests.
/// </summary>
internal sealed class Http1Response
{
    public int Status { get; private set; }

    /// <summary>The headers in the order received, names in their canonical spelling when common.</summary>
    public List<KeyValuePair<string, string>> Headers { get; } = new(16);

    public List<KeyValuePair<string, string>> Trailers { get; } = [];

    public BodyFraming Framing { get; private set; }

    public long ContentLength { get; private set; } = -1;

    /// <summary>The connection may carry another exchange after this one.</summary>
    public bool KeepAlive { get; private set; }

    /// <summary>The response's Connection header, whose listed names are hop-by-hop too.</summary>
    public StringValues Connection { get; private set; }

    // The previous response's header lines on this connection, by position. A backend answers
    // with the same lines in the same order, most with the same values (Server, Content-Type,
    // Date within a second), so those strings are taken from here rather than made again.
    private readonly KeyValuePair<string, string>[] _recent = new KeyValuePair<string, string>[16];

    /// <summary>The header line at <paramref name="index"/> as strings: the previous response's when its bytes are the same.</summary>
    private (string Name, string Value) Decode(int index, ReadOnlySpan<byte> nameBytes, ReadOnlySpan<byte> valueBytes)
    {
        if ((uint)index >= (uint)_recent.Length)
        {
            return (HeaderName(nameBytes), Latin1(valueBytes));
        }
        var (recentName, recentValue) = _recent[index];
        // Byte for byte (case included), so a reused name is what HeaderName would return.
        var name = recentName is not null && Ascii.Equals(nameBytes, recentName) ? recentName : HeaderName(nameBytes);
        var value = recentValue is not null && Ascii.Equals(valueBytes, recentValue) ? recentValue : Latin1(valueBytes);
        _recent[index] = new KeyValuePair<string, string>(name, value);
        return (name, value);
    }

    private static string Latin1(ReadOnlySpan<byte> bytes) => bytes.IsEmpty ? "" : Encoding.Latin1.GetString(bytes);

    public void Reset()
    {
        Status = 0;
        Headers.Clear();
        Trailers.Clear();
        Framing = BodyFraming.None;
        ContentLength = -1;
        KeepAlive = false;
        Connection = StringValues.Empty;
    }

    /// <summary>
    /// Parses one head from <paramref name="buffer"/>: the bytes it took, 0 when the head is not
    /// complete yet. Throws <see cref="HttpRequestException"/> (InvalidResponse) when it breaks a rule.
    /// </summary>
    public int TryParse(ReadOnlySpan<byte> buffer, bool headRequest)
    {
        var end = HeadEnd(buffer);
        if (end < 0)
        {
            return 0;
        }
        Reset();
        var head = buffer[..end];
        var lineEnd = head.IndexOf((byte)'\n');
        ParseStatusLine(TrimCr(head[..lineEnd]), out var minor);
        var rest = head[(lineEnd + 1)..];
        long length = -1;
        var lengthSeen = false;
        var transferEncoding = false;
        var chunked = false;
        var close = false;
        var keepAliveToken = false;
        while (NextLine(ref rest, out var line))
        {
            if (line[0] is (byte)' ' or (byte)'\t')
            {
                throw Invalid("a folded header line (obsolete line folding is not accepted)");
            }
            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                throw Invalid("a header line without a name and a colon");
            }
            var nameBytes = line[..colon];
            if (nameBytes.ContainsAnyExcept(TokenBytes))
            {
                throw Invalid($"the header name '{Printable(nameBytes)}' is not a token (a space before the colon is not accepted)");
            }
            var valueBytes = line[(colon + 1)..].Trim(" \t"u8);
            if (valueBytes.ContainsAny(ControlBytes))
            {
                throw new UpstreamProtocolException($"the backend sent an invalid response header: {Printable(nameBytes)} (a control character in its value)");
            }
            var (name, value) = Decode(Headers.Count, nameBytes, valueBytes);
            Headers.Add(new KeyValuePair<string, string>(name, value));

            if (ReferenceEquals(name, Names.ContentLength))
            {
                // "13", or "13, 13" from a sender that joined two headers: each part a number, all the same.
                var parts = valueBytes;
                while (true)
                {
                    var comma = parts.IndexOf((byte)',');
                    var part = (comma < 0 ? parts : parts[..comma]).Trim(" \t"u8);
                    if (part.IsEmpty || part.ContainsAnyExceptInRange((byte)'0', (byte)'9') || !Utf8Parser.TryParse(part, out long parsed, out var used) || used != part.Length)
                    {
                        throw Invalid($"Content-Length '{value}' is not a number");
                    }
                    if (lengthSeen && parsed != length)
                    {
                        throw Invalid("Content-Length headers that disagree");
                    }
                    length = parsed;
                    lengthSeen = true;
                    if (comma < 0)
                    {
                        break;
                    }
                    parts = parts[(comma + 1)..];
                }
            }
            else if (ReferenceEquals(name, Names.TransferEncoding))
            {
                transferEncoding = true;
                // Only a final "chunked" frames the body; any other coding last means until close.
                var last = value.AsSpan();
                var comma = last.LastIndexOf(',');
                chunked = (comma < 0 ? last : last[(comma + 1)..]).Trim(" \t").Equals("chunked", StringComparison.OrdinalIgnoreCase);
            }
            else if (ReferenceEquals(name, Names.Connection))
            {
                Connection = StringValues.Concat(Connection, value);
                close |= HasToken(valueBytes, "close"u8);
                keepAliveToken |= HasToken(valueBytes, "keep-alive"u8);
            }
        }

        KeepAlive = !close && (minor == 1 || keepAliveToken);
        if (headRequest || Status is < 200 or 204 or 304)
        {
            Framing = BodyFraming.None;
        }
        else if (transferEncoding)
        {
            Framing = chunked ? BodyFraming.Chunked : BodyFraming.UntilClose;
            if (lengthSeen)
            {
                // Both framings at once: the coding wins, and the connection is not trusted again.
                KeepAlive = false;
            }
        }
        else if (lengthSeen)
        {
            Framing = BodyFraming.Length;
            ContentLength = length;
        }
        else
        {
            Framing = BodyFraming.UntilClose;
        }
        if (Framing == BodyFraming.UntilClose)
        {
            KeepAlive = false;
        }
        return end;
    }

    /// <summary>
    /// Parses the trailer section after the last chunk: the bytes it took, 0 when not complete yet.
    /// The same rules as header lines; trailers that frame or route a message are dropped.
    /// </summary>
    public int TryParseTrailers(ReadOnlySpan<byte> buffer)
    {
        // The section is empty (one empty line) or lines up to an empty line.
        int end;
        if (buffer.StartsWith("\r\n"u8))
        {
            end = 2;
        }
        else if (buffer.StartsWith("\n"u8))
        {
            end = 1;
        }
        else
        {
            var blank = HeadEnd(buffer);
            if (blank < 0)
            {
                return 0;
            }
            end = blank;
        }
        var rest = buffer[..end];
        while (NextLine(ref rest, out var line))
        {
            var colon = line.IndexOf((byte)':');
            if (colon <= 0 || line[..colon].ContainsAnyExcept(TokenBytes) || line[0] is (byte)' ' or (byte)'\t')
            {
                throw Invalid("a malformed trailer line");
            }
            var valueBytes = line[(colon + 1)..].Trim(" \t"u8);
            if (valueBytes.ContainsAny(ControlBytes))
            {
                throw Invalid("a control character in a trailer");
            }
            var name = HeaderName(line[..colon]);
            if (ReferenceEquals(name, Names.ContentLength) || ReferenceEquals(name, Names.TransferEncoding) || ReferenceEquals(name, Names.Host))
            {
                continue;
            }
            Trailers.Add(new KeyValuePair<string, string>(name, Latin1(valueBytes)));
        }
        return end;
    }

    /// <summary>The index just past the blank line that ends a head (CRLF or a bare LF), or -1.</summary>
    internal static int HeadEnd(ReadOnlySpan<byte> buffer)
    {
        var from = 0;
        while (true)
        {
            var n = buffer[from..].IndexOf((byte)'\n');
            if (n < 0)
            {
                return -1;
            }
            var at = from + n + 1;
            if (at < buffer.Length && buffer[at] == (byte)'\n')
            {
                return at + 1;
            }
            if (at + 1 < buffer.Length && buffer[at] == (byte)'\r' && buffer[at + 1] == (byte)'\n')
            {
                return at + 2;
            }
            if (at >= buffer.Length || (at + 1 >= buffer.Length && buffer[at] == (byte)'\r'))
            {
                return -1;
            }
            from = at;
        }
    }

    private void ParseStatusLine(ReadOnlySpan<byte> line, out int minor)
    {
        // HTTP/1.x SP 3DIGIT [SP reason]
        if (line.Length < 12 || !line.StartsWith("HTTP/1."u8) || line[7] is not ((byte)'0' or (byte)'1') || line[8] != (byte)' '
            || !Utf8Parser.TryParse(line.Slice(9, 3), out int status, out var used) || used != 3 || status < 100
            || (line.Length > 12 && line[12] != (byte)' '))
        {
            throw Invalid($"the status line '{Printable(line)}' is not HTTP/1.0 or HTTP/1.1 with a three-digit status");
        }
        minor = line[7] - (byte)'0';
        Status = status;
    }

    /// <summary>Takes the next line (its CR dropped) off <paramref name="rest"/>: false at the end or at an empty line.</summary>
    private static bool NextLine(ref ReadOnlySpan<byte> rest, out ReadOnlySpan<byte> line)
    {
        var n = rest.IndexOf((byte)'\n');
        line = TrimCr(n < 0 ? rest : rest[..n]);
        rest = n < 0 ? [] : rest[(n + 1)..];
        return !line.IsEmpty;
    }

    private static ReadOnlySpan<byte> TrimCr(ReadOnlySpan<byte> line) =>
        !line.IsEmpty && line[^1] == (byte)'\r' ? line[..^1] : line;

    private static bool HasToken(ReadOnlySpan<byte> list, ReadOnlySpan<byte> token)
    {
        while (true)
        {
            var comma = list.IndexOf((byte)',');
            if (Ascii.EqualsIgnoreCase((comma < 0 ? list : list[..comma]).Trim(" \t"u8), token))
            {
                return true;
            }
            if (comma < 0)
            {
                return false;
            }
            list = list[(comma + 1)..];
        }
    }

    internal static UpstreamProtocolException Invalid(string what) => new($"the backend sent an invalid response: {what}");

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var text = Encoding.Latin1.GetString(bytes.Length > 80 ? bytes[..80] : bytes);
        return string.Create(text.Length, text, static (span, t) =>
        {
            for (var i = 0; i < t.Length; i++)
            {
                span[i] = t[i] is >= ' ' and <= '~' ? t[i] : '?';
            }
        });
    }

    // RFC 9110 §5.6.2 tchar.
    private static readonly SearchValues<byte> TokenBytes = SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    // Control characters but tab, and DEL: never in a field value.
    private static readonly SearchValues<byte> ControlBytes = SearchValues.Create(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127]);

    /// <summary>
    /// A header name as a string: one of the common ones in its usual spelling without allocating
    /// (as SocketsHttpHandler does with the headers it knows), else as received.
    /// </summary>
    private static string HeaderName(ReadOnlySpan<byte> name)
    {
        foreach (var known in Names.All)
        {
            if (known.Length == name.Length && Ascii.EqualsIgnoreCase(name, known))
            {
                return known;
            }
        }
        return Encoding.Latin1.GetString(name);
    }

    internal static class Names
    {
        public const string ContentLength = "Content-Length";
        public const string TransferEncoding = "Transfer-Encoding";
        public const string Connection = "Connection";
        public const string Host = "Host";

        public static readonly string[] All =
        [
            ContentLength, "Content-Type", "Date", "Server", TransferEncoding, Connection, "Keep-Alive",
            "Cache-Control", "Content-Encoding", "ETag", "Last-Modified", "Location", "Set-Cookie", "Vary",
            "Expires", "Accept-Ranges", "Age", "Content-Language", "Content-Range", "Content-Disposition",
            "Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Access-Control-Allow-Origin",
            "WWW-Authenticate", "Retry-After", "Trailer", "Upgrade", "Pragma", "Link", "Alt-Svc",
            "Sec-WebSocket-Accept", "Proxy-Authenticate", "Via", Host,
        ];
    }
}
