using System.Buffers;
using System.Globalization;
using Fulcrum.Forwarding;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Observability;

/// <summary>
/// The access log line in Apache's combined format, as nginx writes it, followed by Fulcrum's own
/// fields as key=value pairs, so tools that read combined logs still can:
/// <c>127.0.0.1 - - [21/Nov/2026:03:07:00 +0000] "GET /v1/orders HTTP/1.1" 200 114 "-" "curl/8.0" request_id=… route=api pool=api backend=api-1 error=- duration_ms=1.7 upstream_connect_ms=- ttfb_ms=1.6 attempts=api-1:ok</c>.
/// The request line has no query string (it carries secrets), as in the JSON format. Written byte
/// by byte into the thread's pending buffer, as the JSON line is (<see cref="LineWriter"/>): no
/// string is built for a line.
/// </summary>
internal static class CombinedLine
{
    /// <summary>Printable ASCII but the quote and the backslash: what needs no escape.</summary>
    private static readonly SearchValues<char> Unescaped = SearchValues.Create(
        " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~");

    public static void Write(IBufferWriter<byte> buffer, Forwarding.ProxyExchange request, RequestRecord record)
    {
        var path = request.Path;
        var referer = request.Header("Referer");
        var userAgent = request.Header("User-Agent");
        var referrerText = referer.Count switch { 0 => "", 1 => referer[0] ?? "", _ => referer.ToString() };
        var agentText = userAgent.Count switch { 0 => "", 1 => userAgent[0] ?? "", _ => userAgent.ToString() };
        var attempts = record.Attempts;
        // One span for the whole line: a quoted value's character is at most three UTF-8 bytes,
        // each written as \xHH; any other text is at most three bytes a character.
        var quoted = path.Length + referrerText.Length + agentText.Length;
        var text = Len(request.Method) + Len(request.Protocol) + record.RequestIdText.Length + Len(record.Route) + Len(record.Pool) + Len(record.Backend);
        foreach (var attempt in attempts)
        {
            text += Len(attempt.Backend) + 32;
        }
        var line = new LineWriter(buffer.GetSpan(512 + (12 * quoted) + (3 * text)));
        line.Address(request.RemoteIp, quoted: false, "-"u8);
        line.Raw(" - - ["u8);
        record.StartTime.UtcDateTime.TryFormat(line.Free, out var written, "dd/MMM/yyyy:HH:mm:ss", CultureInfo.InvariantCulture);
        line.Advance(written);
        line.Raw(" +0000] \""u8);
        line.Plain(request.Method);
        line.Byte((byte)' ');
        line.Quoted(path, ""u8);
        line.Byte((byte)' ');
        line.Plain(request.Protocol);
        line.Raw("\" "u8);
        line.Number(record.Status);
        line.Byte((byte)' ');
        if (record.BytesOut > 0)
        {
            line.Number(record.BytesOut);
        }
        else
        {
            line.Byte((byte)'-');
        }
        line.Raw(" \""u8);
        line.Quoted(referrerText, "-"u8);
        line.Raw("\" \""u8);
        line.Quoted(agentText, "-"u8);
        line.Raw("\" request_id="u8);
        line.Utf8(record.RequestIdText);
        line.Raw(" route="u8);
        line.Plain(record.Route ?? "-");
        line.Raw(" pool="u8);
        line.Plain(record.Pool ?? "-");
        line.Raw(" backend="u8);
        line.Plain(record.Backend ?? "-");
        line.Raw(" error="u8);
        line.Plain(record.Error == FulcrumError.None ? "-" : ErrorCodes.Code(record.Error));
        line.Raw(" duration_ms="u8);
        line.Ms(record.DurationMs, "-"u8);
        line.Raw(" upstream_connect_ms="u8);
        line.Ms(record.ConnectMs, "-"u8);
        line.Raw(" ttfb_ms="u8);
        line.Ms(record.TimeToFirstByteMs, "-"u8);
        line.Raw(" bytes_in="u8);
        line.Number(record.BytesIn);
        if (attempts.Count > 0)
        {
            line.Raw(" attempts="u8);
            for (var i = 0; i < attempts.Count; i++)
            {
                if (i > 0)
                {
                    line.Byte((byte)',');
                }
                line.Plain(attempts[i].Backend);
                line.Byte((byte)':');
                line.Plain(attempts[i].Result == FulcrumError.None ? "ok" : ErrorCodes.Code(attempts[i].Result));
            }
        }
        buffer.Advance(line.Position);
    }

    private static int Len(string? text) => text?.Length ?? 1;

    /// <summary>A value outside quotes (names from configuration, codes, the method): as it is, in UTF-8.</summary>
    private static void Plain(this ref LineWriter line, string value) => line.Utf8(value);

    /// <summary>
    /// A value inside the line's quotes, escaped as nginx does: each UTF-8 byte of a quote, a
    /// backslash, a control character or anything beyond ASCII becomes <c>\xHH</c>.
    /// </summary>
    private static void Quoted(this ref LineWriter line, string value, ReadOnlySpan<byte> empty)
    {
        if (value.Length == 0)
        {
            line.Raw(empty);
            return;
        }
        if (!value.AsSpan().ContainsAnyExcept(Unescaped))
        {
            line.Ascii(value);
            return;
        }
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in value.EnumerateRunes())
        {
            // A lone surrogate enumerates as U+FFFD, as Encoding.UTF8 writes it.
            var length = rune.EncodeToUtf8(utf8);
            foreach (var b in utf8[..length])
            {
                if (b is (byte)'"' or (byte)'\\' || b < 0x20 || b > (byte)'~')
                {
                    line.Raw("\\x"u8);
                    line.Byte(Hex[b >> 4]);
                    line.Byte(Hex[b & 0xF]);
                }
                else
                {
                    line.Byte(b);
                }
            }
        }
    }

    private static ReadOnlySpan<byte> Hex => "0123456789ABCDEF"u8;
}
