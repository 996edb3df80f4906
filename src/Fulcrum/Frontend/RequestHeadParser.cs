using System.Buffers;
using Fulcrum.Forwarding;

namespace Fulcrum.Frontend;

/// <summary>What parsing a request head came to.</summary>
internal enum ParseResult
{
    /// <summary>More bytes are needed (and the limits allow them).</summary>
    Incomplete,

    /// <summary>A whole head, in <see cref="RequestHead"/>.</summary>
    Done,

    /// <summary>Refused: answer with the refusal and close the connection.</summary>
    Refused,
}

/// <summary>Why a request was refused: its code (and so its status) and a sentence for the client and the log.</summary>
internal readonly record struct Refusal(FulcrumError Error, string Message);

/// <summary>
/// Fulcrum's strict HTTP/1.1 request head parser (RFC 9112), for its own front end: anything a
/// server or a proxy behind it could read differently is refused, never guessed at.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Lines end in CRLF; a bare LF or a bare CR is refused. Empty lines before the request
/// line are passed over (RFC 9112 §2.2).</item>
/// <item>The request line is a token method, one space, a target of visible characters (obs-text
/// allowed, as nginx passes it), one space, <c>HTTP/1.1</c> or <c>HTTP/1.0</c>; past
/// <see cref="FrontendLimits.RequestLine"/> a 414.</item>
/// <item>Header names are tokens, with nothing between the name and the colon; values hold no
/// control character but HTAB; a line folded onto the previous (obs-fold) is refused; past
/// <see cref="FrontendLimits.Headers"/> bytes or <see cref="FrontendLimits.HeaderCount"/> lines a 431.</item>
/// <item>Framing: exactly one Host in HTTP/1.1, at most one in HTTP/1.0, holding only authority
/// characters; Content-Length digits only, never a list in one field, repeated as fields only
/// when every value is the same text; Transfer-Encoding only as a single <c>chunked</c> (another
/// registered coding 501, anything else or <c>chunked</c> twice 400), never in HTTP/1.0, never
/// with Content-Length.</item>
/// </list>
/// Parsing takes one contiguous span holding the head, records slices into it, and allocates only
/// to word a refusal.
/// </remarks>
internal static class RequestHeadParser
{
    // tchar (RFC 9110 §5.6.2): what a method and a header name are made of.
    private static readonly SearchValues<byte> Token = SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    // A field value may hold HTAB, visible ASCII, SP and obs-text (RFC 9110 §5.5); no other control.
    private static readonly SearchValues<byte> NotInValue = SearchValues.Create(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127]);

    // A target is visible characters (obs-text passed on); no control, space or DEL.
    private static readonly SearchValues<byte> NotInTarget = SearchValues.Create(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 127]);

    // What an authority (RFC 3986 §3.2) is written with: reg-name or IP literal, and a port.
    private static readonly SearchValues<byte> Authority = SearchValues.Create("-._~!$&'()*+,;=:%[]0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    /// <summary>
    /// Parses the head at the start of <paramref name="input"/> into <paramref name="head"/>
    /// (reset first). <see cref="RequestHead.Length"/> is then how many bytes it took.
    /// </summary>
    public static ParseResult Parse(ReadOnlySpan<byte> input, FrontendLimits limits, RequestHead head, out Refusal refusal)
    {
        head.Reset();
        refusal = default;
        var start = 0;
        // Empty lines before a request line are passed over (RFC 9112 §2.2), a few at most.
        while (input.Length - start >= 2 && input[start] == '\r' && input[start + 1] == '\n' && start < 8)
        {
            start += 2;
        }
        var lineEnd = input[start..].IndexOf((byte)'\n');
        if (lineEnd < 0)
        {
            return input.Length - start > limits.RequestLine
                ? Refuse(out refusal, FulcrumError.RequestLineTooLong, $"the request line is longer than {limits.RequestLine} bytes")
                : ParseResult.Incomplete;
        }
        if (lineEnd > limits.RequestLine)
        {
            return Refuse(out refusal, FulcrumError.RequestLineTooLong, $"the request line is longer than {limits.RequestLine} bytes");
        }
        if (lineEnd == 0 || input[start + lineEnd - 1] != '\r')
        {
            return Refuse(out refusal, FulcrumError.BadRequest, "the request line ends in a bare LF (lines must end in CRLF)");
        }
        if (!RequestLine(input.Slice(start, lineEnd - 1), start, head, out refusal))
        {
            return ParseResult.Refused;
        }

        var position = start + lineEnd + 1;
        var headersStart = position;
        while (true)
        {
            var rest = input[position..];
            var end = rest.IndexOf((byte)'\n');
            if (end < 0)
            {
                return position - headersStart + rest.Length > limits.Headers
                    ? Refuse(out refusal, FulcrumError.HeadersTooLarge, $"the request headers are larger than {limits.Headers} bytes")
                    : ParseResult.Incomplete;
            }
            if (position + end + 1 - headersStart > limits.Headers)
            {
                return Refuse(out refusal, FulcrumError.HeadersTooLarge, $"the request headers are larger than {limits.Headers} bytes");
            }
            if (end == 0 || rest[end - 1] != '\r')
            {
                return Refuse(out refusal, FulcrumError.BadRequest, "a header line ends in a bare LF (lines must end in CRLF)");
            }
            if (end == 1)
            {
                head.Length = position + 2;
                return Framing(input, head, out refusal) ? ParseResult.Done : ParseResult.Refused;
            }
            if (head.Count == limits.HeaderCount)
            {
                return Refuse(out refusal, FulcrumError.HeadersTooLarge, $"the request has more than {limits.HeaderCount} header lines");
            }
            if (!HeaderLine(rest[..(end - 1)], position, head, out refusal))
            {
                return ParseResult.Refused;
            }
            position += end + 1;
        }
    }

    private static bool RequestLine(ReadOnlySpan<byte> line, int offset, RequestHead head, out Refusal refusal)
    {
        refusal = default;
        var methodEnd = line.IndexOfAnyExcept(Token);
        if (methodEnd <= 0 || line[methodEnd] != ' ')
        {
            return Fail(out refusal, FulcrumError.BadRequest, "the request line does not start with a method and one space");
        }
        var afterMethod = line[(methodEnd + 1)..];
        var targetEnd = afterMethod.IndexOf((byte)' ');
        if (targetEnd <= 0)
        {
            return Fail(out refusal, FulcrumError.BadRequest, "the request line has no target, or more than one space before it");
        }
        var target = afterMethod[..targetEnd];
        if (target.ContainsAny(NotInTarget))
        {
            return Fail(out refusal, FulcrumError.BadRequest, "the request target holds a control character");
        }
        var version = afterMethod[(targetEnd + 1)..];
        if (version.SequenceEqual("HTTP/1.1"u8))
        {
            head.Minor = 1;
        }
        else if (version.SequenceEqual("HTTP/1.0"u8))
        {
            head.Minor = 0;
        }
        else
        {
            return Fail(out refusal, FulcrumError.BadRequest, "the request line does not end in one space and HTTP/1.1 or HTTP/1.0");
        }
        var method = line[..methodEnd];
        head.Method = new Slice(offset, methodEnd);
        head.Target = new Slice(offset + methodEnd + 1, targetEnd);
        if (target[0] == '/')
        {
            head.Form = TargetForm.Origin;
        }
        else if (target.Length == 1 && target[0] == '*')
        {
            if (!method.SequenceEqual("OPTIONS"u8))
            {
                return Fail(out refusal, FulcrumError.BadRequest, "the target '*' is only for OPTIONS");
            }
            head.Form = TargetForm.Asterisk;
        }
        else if (method.SequenceEqual("CONNECT"u8))
        {
            if (target.ContainsAnyExcept(Authority))
            {
                return Fail(out refusal, FulcrumError.BadRequest, "the CONNECT target is not host:port");
            }
            head.Form = TargetForm.Authority;
        }
        else if (StartsWithIgnoreCase(target, "http://"u8) || StartsWithIgnoreCase(target, "https://"u8))
        {
            head.Form = TargetForm.Absolute;
        }
        else
        {
            return Fail(out refusal, FulcrumError.BadRequest, "the request target is neither a path, an absolute URI, '*' nor host:port");
        }
        return true;
    }

    private static bool HeaderLine(ReadOnlySpan<byte> line, int offset, RequestHead head, out Refusal refusal)
    {
        refusal = default;
        if (line[0] is (byte)' ' or (byte)'\t')
        {
            return Fail(out refusal, FulcrumError.BadRequest, "a header line is folded onto the previous one (obs-fold)");
        }
        var nameEnd = line.IndexOfAnyExcept(Token);
        if (nameEnd < 0)
        {
            return Fail(out refusal, FulcrumError.BadRequest, "a header line has no colon");
        }
        if (line[nameEnd] != ':')
        {
            return Fail(out refusal, FulcrumError.BadRequest, line[nameEnd] is (byte)' ' or (byte)'\t'
                ? "a header name is followed by white space before its colon"
                : "a header name is not a token");
        }
        if (nameEnd == 0)
        {
            return Fail(out refusal, FulcrumError.BadRequest, "a header line has an empty name");
        }
        var value = line[(nameEnd + 1)..];
        if (value.ContainsAny(NotInValue))
        {
            return Fail(out refusal, FulcrumError.BadRequest, "a header value holds a control character");
        }
        var lead = value.IndexOfAnyExcept((byte)' ', (byte)'\t');
        var valueStart = lead < 0 ? value.Length : lead;
        var valueEnd = value.LastIndexOfAnyExcept((byte)' ', (byte)'\t') + 1;
        head.Add(new Slice(offset, nameEnd), new Slice(offset + nameEnd + 1 + valueStart, Math.Max(0, valueEnd - valueStart)));
        return true;
    }

    /// <summary>Host, Content-Length, Transfer-Encoding, Connection, Upgrade and Expect, read once all headers are in.</summary>
    private static bool Framing(ReadOnlySpan<byte> input, RequestHead head, out Refusal refusal)
    {
        refusal = default;
        var hosts = 0;
        long length = -1;
        var lengths = 0;
        ReadOnlySpan<byte> firstLength = default;
        var codings = 0;
        var chunked = 0;
        var unknownCoding = false;
        var keepAlive = false;
        var upgradeToken = false;
        var upgradeHeader = false;
        for (var i = 0; i < head.Count; i++)
        {
            var name = head.Name(i).Of(input);
            var value = head.Value(i).Of(input);
            if (Is(name, "host"u8))
            {
                hosts++;
                if (value.IsEmpty ? head.Minor == 1 : value.ContainsAnyExcept(Authority))
                {
                    return Fail(out refusal, FulcrumError.BadRequest, "the Host header is not a host with an optional port");
                }
                head.Host = head.Value(i);
            }
            else if (Is(name, "content-length"u8))
            {
                var element = Trim(value);
                if (element.IndexOf((byte)',') >= 0)
                {
                    // RFC 9110 §8.6 would allow "5, 5"; the desync corpus counts a list in one
                    // field as severe (a server behind may take the first or the last), so it is
                    // refused, while the same length on two lines is one length.
                    return Fail(out refusal, FulcrumError.BadRequest, element.IndexOfAnyExcept("0123456789, \t"u8) < 0 && !AllSame(element)
                        ? "the request has Content-Length values that disagree"
                        : "the Content-Length is a list, not one number");
                }
                if (!Digits(element, out var n))
                {
                    return Fail(out refusal, FulcrumError.BadRequest, "the Content-Length is not a number of digits only");
                }
                // Repeats must be the same text, not merely the same number ("03" and "3" are
                // refused): whoever reads them after Fulcrum cannot read them otherwise.
                if (lengths++ > 0 && !element.SequenceEqual(firstLength))
                {
                    return Fail(out refusal, FulcrumError.BadRequest, "the request has Content-Length values that disagree");
                }
                firstLength = element;
                length = n;
            }
            else if (Is(name, "transfer-encoding"u8))
            {
                foreach (var range in value.Split((byte)','))
                {
                    var coding = Trim(value[range]);
                    if (coding.IsEmpty)
                    {
                        return Fail(out refusal, FulcrumError.BadRequest, "the Transfer-Encoding has an empty coding");
                    }
                    codings++;
                    if (Is(coding, "chunked"u8))
                    {
                        chunked++;
                    }
                    else if (IsRegisteredCoding(coding))
                    {
                        unknownCoding = true;
                    }
                    else
                    {
                        // Not a transfer coding at all ("xchunked", "chunked" with a NBSP or a
                        // parameter): a server behind could take it for chunked. 501 is for a real
                        // coding Fulcrum does not implement.
                        return Fail(out refusal, FulcrumError.BadRequest, "the Transfer-Encoding is not a registered transfer coding");
                    }
                }
            }
            else if (Is(name, "connection"u8))
            {
                foreach (var range in value.Split((byte)','))
                {
                    var option = Trim(value[range]);
                    head.Close |= Is(option, "close"u8);
                    keepAlive |= Is(option, "keep-alive"u8);
                    upgradeToken |= Is(option, "upgrade"u8);
                }
            }
            else if (Is(name, "upgrade"u8))
            {
                upgradeHeader = true;
            }
            else if (Is(name, "expect"u8))
            {
                head.Expect = true;
            }
        }
        if (hosts > 1)
        {
            return Fail(out refusal, FulcrumError.BadRequest, "the request has more than one Host header");
        }
        if (hosts == 0 && head.Minor == 1)
        {
            return Fail(out refusal, FulcrumError.BadRequest, "an HTTP/1.1 request must have a Host header");
        }
        if (codings > 0)
        {
            if (head.Minor == 0)
            {
                return Fail(out refusal, FulcrumError.BadRequest, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
            }
            if (lengths > 0)
            {
                return Fail(out refusal, FulcrumError.BadRequest, "the request has both Transfer-Encoding and Content-Length");
            }
            if (unknownCoding)
            {
                return Fail(out refusal, FulcrumError.UnsupportedTransferEncoding, "the request uses a transfer coding other than chunked");
            }
            if (chunked > 1)
            {
                return Fail(out refusal, FulcrumError.BadRequest, "the Transfer-Encoding names chunked more than once");
            }
            head.Framing = RequestFraming.Chunked;
        }
        else if (lengths > 0)
        {
            head.Framing = RequestFraming.Length;
            head.ContentLength = length;
        }
        head.Close |= head.Minor == 0 && !keepAlive;
        head.Upgrade = upgradeToken && upgradeHeader;
        return true;
    }

    /// <summary>1*DIGIT as a number, refused past 18 digits (no length that large is real; none overflows).</summary>
    private static bool Digits(ReadOnlySpan<byte> text, out long value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 18)
        {
            return false;
        }
        foreach (var b in text)
        {
            if (b is < (byte)'0' or > (byte)'9')
            {
                return false;
            }
            value = (value * 10) + (b - '0');
        }
        return true;
    }

    /// <summary>The transfer codings of the IANA registry but chunked (RFC 9112 §7): known, not implemented here (501).</summary>
    private static bool IsRegisteredCoding(ReadOnlySpan<byte> coding) =>
        Is(coding, "gzip"u8) || Is(coding, "x-gzip"u8) || Is(coding, "deflate"u8) || Is(coding, "compress"u8)
        || Is(coding, "x-compress"u8) || Is(coding, "identity"u8) || Is(coding, "trailers"u8);

    /// <summary>Whether every element of a comma list is the same text.</summary>
    private static bool AllSame(ReadOnlySpan<byte> list)
    {
        ReadOnlySpan<byte> first = default;
        var any = false;
        foreach (var range in list.Split((byte)','))
        {
            var element = Trim(list[range]);
            if (any && !element.SequenceEqual(first))
            {
                return false;
            }
            first = element;
            any = true;
        }
        return true;
    }

    private static ReadOnlySpan<byte> Trim(ReadOnlySpan<byte> text) => text.Trim(" \t"u8);

    /// <summary>ASCII case-insensitive equality with a lower-case literal.</summary>
    private static bool Is(ReadOnlySpan<byte> text, ReadOnlySpan<byte> lower) => System.Text.Ascii.EqualsIgnoreCase(text, lower);

    private static bool StartsWithIgnoreCase(ReadOnlySpan<byte> text, ReadOnlySpan<byte> lower) =>
        text.Length >= lower.Length && System.Text.Ascii.EqualsIgnoreCase(text[..lower.Length], lower);

    private static ParseResult Refuse(out Refusal refusal, FulcrumError error, string message)
    {
        refusal = new Refusal(error, message);
        return ParseResult.Refused;
    }

    private static bool Fail(out Refusal refusal, FulcrumError error, string message)
    {
        refusal = new Refusal(error, message);
        return false;
    }
}
