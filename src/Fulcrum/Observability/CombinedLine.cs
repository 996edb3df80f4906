using System.Buffers;
using System.Globalization;
using System.Text;
using Fulcrum.Forwarding;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Observability;

/// <summary>
/// The access log line in Apache's combined format, as nginx writes it, followed by Fulcrum's own
/// fields as key=value pairs, so tools that read combined logs still can:
/// <c>127.0.0.1 - - [21/Nov/2026:03:07:00 +0000] "GET /v1/orders HTTP/1.1" 200 114 "-" "curl/8.0" request_id=… route=api pool=api backend=api-1 error=- duration_ms=1.7 upstream_connect_ms=- ttfb_ms=1.6 attempts=api-1:ok</c>.
/// The request line has no query string (it carries secrets), as in the JSON format.
/// </summary>
internal static class CombinedLine
{
    /// <summary>Printable ASCII but the quote and the backslash: what needs no escape.</summary>
    private static readonly SearchValues<char> Plain = SearchValues.Create(
        " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~");

    public static void Write(ArrayBufferWriter<byte> buffer, HttpContext context, RequestRecord record)
    {
        var request = context.Request;
        var text = new StringBuilder(256);
        text.Append(context.Connection.RemoteIpAddress?.ToString() ?? "-").Append(" - - [");
        text.Append(record.StartTime.ToString("dd/MMM/yyyy:HH:mm:ss +0000", CultureInfo.InvariantCulture)).Append("] \"");
        text.Append(request.Method).Append(' ').Append(Quoted(request.Path.Value ?? "/")).Append(' ').Append(request.Protocol).Append("\" ");
        text.Append(record.Status.ToString(CultureInfo.InvariantCulture)).Append(' ');
        text.Append(record.BytesOut > 0 ? record.BytesOut.ToString(CultureInfo.InvariantCulture) : "-").Append(" \"");
        text.Append(Quoted(request.Headers.Referer.ToString(), "-")).Append("\" \"");
        text.Append(Quoted(request.Headers.UserAgent.ToString(), "-")).Append('"');
        text.Append(" request_id=").Append(record.RequestId);
        text.Append(" route=").Append(record.Route ?? "-");
        text.Append(" pool=").Append(record.Pool ?? "-");
        text.Append(" backend=").Append(record.Backend ?? "-");
        text.Append(" error=").Append(record.Error == FulcrumError.None ? "-" : ErrorCodes.Code(record.Error));
        text.Append(" duration_ms=").Append(Ms(record.DurationMs));
        text.Append(" upstream_connect_ms=").Append(Ms(record.ConnectMs));
        text.Append(" ttfb_ms=").Append(Ms(record.TimeToFirstByteMs));
        text.Append(" bytes_in=").Append(record.BytesIn.ToString(CultureInfo.InvariantCulture));
        if (record.Attempts is { Count: > 0 } attempts)
        {
            text.Append(" attempts=");
            for (var i = 0; i < attempts.Count; i++)
            {
                text.Append(i == 0 ? "" : ",").Append(attempts[i].Backend).Append(':')
                    .Append(attempts[i].Result == FulcrumError.None ? "ok" : ErrorCodes.Code(attempts[i].Result));
            }
        }
        var line = text.ToString();
        var bytes = Encoding.UTF8.GetBytes(line, buffer.GetSpan(Encoding.UTF8.GetMaxByteCount(line.Length)));
        buffer.Advance(bytes);
    }

    private static string Ms(double ms) => ms < 0 ? "-" : Math.Round(ms, 3).ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// A value inside the line's quotes, escaped as nginx does: each UTF-8 byte of a quote, a
    /// backslash, a control character or anything beyond ASCII becomes <c>\xHH</c>.
    /// </summary>
    private static string Quoted(string value, string empty = "")
    {
        if (value.Length == 0)
        {
            return empty;
        }
        if (!value.AsSpan().ContainsAnyExcept(Plain))
        {
            return value;
        }
        var text = new StringBuilder(value.Length + 16);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            if (b is (byte)'"' or (byte)'\\' || b < 0x20 || b > (byte)'~')
            {
                text.Append(CultureInfo.InvariantCulture, $"\\x{b:X2}");
            }
            else
            {
                text.Append((char)b);
            }
        }
        return text.ToString();
    }
}
