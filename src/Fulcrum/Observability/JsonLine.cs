using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Fulcrum.Forwarding;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Observability;

/// <summary>
/// The access log's JSON line, written byte by byte into the thread's pending buffer. The field
/// names and punctuation are constants; a value from configuration or a fixed set (route, pool,
/// backend, error code, protocol) is encoded once per string and copied; a value from the request
/// (request id, method, host, path) is copied as ASCII when it needs no escape, which is nearly
/// always, and otherwise escaped as <see cref="JavaScriptEncoder.UnsafeRelaxedJsonEscaping"/> does:
/// quotes, backslashes and control characters are escaped (a line cannot be split or forged),
/// other characters are kept as UTF-8. Measured against Utf8JsonWriter, which checks and tracks
/// state on every value, this halves the line's cost (bench/micro.sh, AccessLogLine).
/// </summary>
internal static class JsonLine
{
    /// <summary>Printable ASCII but the quote and the backslash: what a JSON string holds as it is.</summary>
    private static readonly SearchValues<char> Plain = SearchValues.Create(
        " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~");

    // Values from configuration or a fixed set, quoted and encoded once per string instance and
    // found again by the string's identity: a hash read and a reference compare (a
    // ConditionalWeakTable cost several times that, at six look-ups a line).
    private static readonly IdentityTable<SameObject, byte[]> KnownValues = new();

    // The UTC second the last line was written in, as `"yyyy-MM-ddTHH:mm:ss`: formatted once a
    // second rather than once a line. Threads that race on a new second each build the same text.
    private static SecondText? CurrentSecond;

    private sealed class SecondText(long second)
    {
        public readonly long Second = second;
        public readonly byte[] Bytes = Encoding.ASCII.GetBytes(
            "\"" + new DateTime(second * TimeSpan.TicksPerSecond, DateTimeKind.Utc).ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture));
    }

    public static void Write(IBufferWriter<byte> buffer, Forwarding.ProxyExchange request, RequestRecord record)
    {
        var method = request.Method;
        var host = request.Authority;
        var path = request.Path;
        var protocol = request.Protocol;
        var error = ErrorCodes.Code(record.Error);
        // One span for the whole line, asked for once: the fixed text, and at most six bytes for
        // each character of text (an escape such as \u001f is six; UTF-8 is at most three).
        var text = record.RequestIdText.Length + Len(method) + Len(host) + Len(path) + Len(protocol) + Len(record.Route)
            + Len(record.Pool) + Len(record.Backend) + Len(record.TunnelClosedBy) + Len(error);
        var tls = request.Tls;
        if (tls is not null)
        {
            text += 64 + Len(tls.ServerName);
        }
        var attempts = record.Attempts;
        var size = 1024 + (6 * text);
        foreach (var attempt in attempts)
        {
            size += 256 + (6 * Len(attempt.Backend));
        }
        var line = new LineWriter(buffer.GetSpan(size));
        line.Raw("{\"time\":"u8);
        line.Time(record.StartTime);
        line.Raw(",\"request_id\":"u8);
        line.String(record.RequestIdText);
        line.Raw(",\"trace_id\":"u8);
        line.String(record.TraceId);
        line.Raw(",\"client\":"u8);
        line.Address(request.RemoteIp, quoted: true, "null"u8);
        line.Raw(",\"method\":"u8);
        // Not Known: a method outside the standard ones is a new string on every request, and
        // each would take an entry in the table of known values.
        line.String(method);
        // The Host header as received (HTTP/2's :authority arrives as Host), without building a HostString.
        line.Raw(",\"host\":"u8);
        line.String(host);
        line.Raw(",\"path\":"u8);
        line.String(path);
        line.Raw(",\"protocol\":"u8);
        line.Known(protocol);
        line.Raw(",\"status\":"u8);
        line.Number(record.Status);
        line.Raw(",\"route\":"u8);
        line.Known(record.Route);
        line.Raw(",\"pool\":"u8);
        line.Known(record.Pool);
        line.Raw(",\"backend\":"u8);
        line.Known(record.Backend);
        line.Raw(",\"error\":"u8);
        line.Known(error);
        line.Raw(",\"upstream_connect_ms\":"u8);
        line.Ms(record.ConnectMs, "null"u8);
        line.Raw(",\"ttfb_ms\":"u8);
        line.Ms(record.TimeToFirstByteMs, "null"u8);
        line.Raw(",\"duration_ms\":"u8);
        line.Ms(record.DurationMs, "null"u8);
        line.Raw(",\"bytes_in\":"u8);
        line.Number(record.BytesIn);
        line.Raw(",\"bytes_out\":"u8);
        line.Number(record.BytesOut);
        if (tls is not null)
        {
            line.Raw(",\"tls_version\":"u8);
            line.Known(tls.Version);
            line.Raw(",\"tls_cipher\":"u8);
            line.Known(tls.Cipher);
            line.Raw(",\"sni\":"u8);
            line.String(tls.ServerName); // the client's words: escaped, never kept
        }
        if (record.Tunnelled)
        {
            // The line is written when the tunnel ends: duration is its life, bytes are both ways.
            line.Raw(",\"tunnel\":true"u8);
            if (record.TunnelClosedBy is { } by)
            {
                line.Raw(",\"tunnel_closed_by\":"u8);
                line.Known(by);
            }
        }
        if (attempts.Count > 0)
        {
            line.Raw(",\"attempts\":["u8);
            for (var i = 0; i < attempts.Count; i++)
            {
                var attempt = attempts[i];
                line.Raw(i == 0 ? "{\"backend\":"u8 : ",{\"backend\":"u8);
                line.Known(attempt.Backend);
                line.Raw(",\"result\":"u8);
                line.Known(attempt.Result == FulcrumError.None ? "ok" : ErrorCodes.Code(attempt.Result));
                if (attempt.Status != 0)
                {
                    line.Raw(",\"status\":"u8);
                    line.Number(attempt.Status);
                }
                line.Raw(",\"duration_ms\":"u8);
                line.Ms(attempt.DurationMs, "null"u8);
                line.Raw("}"u8);
            }
            line.Raw("]"u8);
        }
        line.Raw("}"u8);
        buffer.Advance(line.Position);
    }

    private static int Len(string? text) => text?.Length ?? 4;

    private static void String(this ref LineWriter line, string? value)
    {
        if (value is null)
        {
            line.Raw("null"u8);
            return;
        }
        line.String(value.AsSpan());
    }

    private static void String(this ref LineWriter line, ReadOnlySpan<char> value)
    {
        if (value.ContainsAnyExcept(Plain))
        {
            line.Raw(Escaped(value));
            return;
        }
        var span = line.Free;
        span[0] = (byte)'"';
        System.Text.Ascii.FromUtf16(value, span[1..], out var written);
        span[written + 1] = (byte)'"';
        line.Advance(written + 2);
    }

    private static void Known(this ref LineWriter line, string? value)
    {
        if (value is null)
        {
            line.Raw("null"u8);
            return;
        }
        var key = new SameObject(value);
        if (!KnownValues.TryGet(key, out var bytes))
        {
            bytes = Escaped(value);
            KnownValues.Add(key, bytes);
        }
        line.Raw(bytes);
    }

    /// <summary>
    /// ISO 8601 with the fraction's trailing zeros dropped, as Utf8JsonWriter writes it. A UTC
    /// time (every request's) copies its second, formatted once per second, and writes the
    /// fraction's digits itself; another offset (tests) takes the runtime's formatter.
    /// </summary>
    private static void Time(this ref LineWriter line, DateTimeOffset time)
    {
        if (time.Offset != TimeSpan.Zero)
        {
            line.FormattedTime(time);
            return;
        }
        var ticks = time.UtcTicks;
        var second = ticks / TimeSpan.TicksPerSecond;
        var text = CurrentSecond;
        if (text is null || text.Second != second)
        {
            text = new SecondText(second);
            CurrentSecond = text;
        }
        line.Raw(text.Bytes);
        var fraction = (int)(ticks - (second * TimeSpan.TicksPerSecond));
        if (fraction != 0)
        {
            // Seven digits, then drop the trailing zeros: at least one digit stays.
            var span = line.Free;
            span[0] = (byte)'.';
            for (var i = 7; i >= 1; i--)
            {
                span[i] = (byte)('0' + (fraction % 10));
                fraction /= 10;
            }
            var n = 8;
            while (span[n - 1] == (byte)'0')
            {
                n--;
            }
            line.Advance(n);
        }
        line.Raw("+00:00\""u8);
    }

    private static void FormattedTime(this ref LineWriter line, DateTimeOffset time)
    {
        var span = line.Free;
        span[0] = (byte)'"';
        time.TryFormat(span[1..], out var n, "O", CultureInfo.InvariantCulture);
        n++;
        // "yyyy-MM-ddTHH:mm:ss.fffffff+hh:mm": trim the seven fraction digits' trailing zeros.
        var dot = span[..n].IndexOf((byte)'.');
        if (dot > 0)
        {
            var end = dot + 8;
            var keep = end;
            while (keep > dot + 1 && span[keep - 1] == (byte)'0')
            {
                keep--;
            }
            if (keep == dot + 1)
            {
                keep = dot;
            }
            span[end..n].CopyTo(span[keep..]);
            n -= end - keep;
        }
        span[n++] = (byte)'"';
        line.Advance(n);
    }

    /// <summary>
    /// Loads the escaper's assemblies now, at start-up: loading them on a request's first name that
    /// needs escaping could fail when file descriptors run out, and would cost that request's line.
    /// </summary>
    internal static void Warm() => Escaped("\"warm\u00e9\"");

    /// <summary>A quoted JSON string with the relaxed encoder's escapes: the rare path.</summary>
    private static byte[] Escaped(ReadOnlySpan<char> value)
    {
        ReadOnlySpan<byte> encoded;
        try
        {
            encoded = JsonEncodedText.Encode(value, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).EncodedUtf8Bytes;
        }
        catch (ArgumentException)
        {
            // A lone surrogate has no UTF-8 form: log it as U+FFFD rather than lose the line.
            encoded = JsonEncodedText.Encode(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(value.ToString())), JavaScriptEncoder.UnsafeRelaxedJsonEscaping).EncodedUtf8Bytes;
        }
        var quoted = new byte[encoded.Length + 2];
        quoted[0] = (byte)'"';
        encoded.CopyTo(quoted.AsSpan(1));
        quoted[^1] = (byte)'"';
        return quoted;
    }
}
