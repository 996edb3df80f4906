using System.Globalization;
using System.Text;
using Fulcrum.Forwarding;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Observability;

/// <summary>
/// The combined line is written byte by byte; these tests hold it to the line the earlier
/// StringBuilder version wrote (kept here as the reference) across the awkward inputs.
/// </summary>
public class CombinedLineTests
{
    public static TheoryData<string, string?, string?, string?, int, bool> Cases() => new()
    {
        // path, referer, user agent, client address, number of attempts, error
        { "/v1/orders", null, "curl/8.5.0", "192.0.2.17", 1, false },
        { "/", "https://example.com/a?b", "Mozilla/5.0 (X11)", "::1", 0, false },
        { "/café/中", "x\"y", "ua\\with\u0001control", "2001:db8::7", 2, true },
        { "/emoji/\U0001F600", "\ud800lone", "ok", null, 3, true },
        { "/sp ace", "", "", "255.255.255.0", 1, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_line_is_the_one_the_reference_writes(string path, string? referer, string? userAgent, string? client, int attempts, bool error)
    {
        var (context, record) = Request(path, referer, userAgent, client, attempts, error);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        CombinedLine.Write(buffer, new Fulcrum.Forwarding.KestrelExchange(context), record);
        Assert.Equal(Reference(context, record), Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    internal static (DefaultHttpContext, RequestRecord) Request(string path, string? referer, string? userAgent, string? client, int attempts, bool error)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = path;
        context.Request.Protocol = "HTTP/1.1";
        if (referer is not null)
        {
            context.Request.Headers.Referer = referer;
        }
        if (userAgent is not null)
        {
            context.Request.Headers.UserAgent = userAgent;
        }
        context.Connection.RemoteIpAddress = client is null ? null : System.Net.IPAddress.Parse(client);
        var start = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero).AddTicks(1234567);
        var record = new RequestRecord("rid-1", start)
        {
            Route = "api",
            Pool = "api",
            Backend = attempts > 0 ? "api-1" : null,
            Status = error ? 502 : 200,
            Error = error ? FulcrumError.ConnectRefused : FulcrumError.None,
            ConnectMs = attempts > 0 ? 0.25 : -1,
            TimeToFirstByteMs = attempts > 0 && !error ? 12.3456 : -1,
            BytesIn = 7,
            BytesOut = error ? 0 : 1234,
        };
        for (var i = 0; i < attempts; i++)
        {
            var failed = error || i < attempts - 1;
            record.AddAttempt(new AttemptRecord($"api-{i + 1}", failed ? FulcrumError.ConnectRefused : FulcrumError.None, null, failed ? 0 : 200, 1.5));
        }
        record.Finish();
        return (context, record);
    }

    /// <summary>The StringBuilder version the byte writer replaced, kept as the reference.</summary>
    private static string Reference(HttpContext context, RequestRecord record)
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
        return text.ToString();
    }

    // The one deliberate change: halves of a microsecond round away from zero, as in the JSON
    // line (Math.Round(ms, 3) rounded them to even, and the two formats could differ by 0.001).
    private static string Ms(double ms) => ms < 0 ? "-" : (Math.Round(ms * 1000, MidpointRounding.AwayFromZero) / 1000).ToString(CultureInfo.InvariantCulture);

    private static string Quoted(string value, string empty = "")
    {
        if (value.Length == 0)
        {
            return empty;
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

/// <summary>
/// Alone, after the parallel tests: a line written by another test in another second, or a name
/// landing on the same slot of the encoded-names table, would make this thread allocate again.
/// </summary>
[Collection(nameof(Fulcrum.Tests.Integration.SerialTests))]
public class AccessLineAllocationTests
{
    [Fact]
    public void Both_formats_write_a_plain_line_without_allocating()
    {
        var (context, record) = CombinedLineTests.Request("/v1/orders", "https://example.com/", "curl/8.5.0", "192.0.2.17", 2, false);
        var exchange = new Fulcrum.Forwarding.KestrelExchange(context);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(64 * 1024);
        // Warm up: the first calls fill caches (the second's text, the encoded names).
        CombinedLine.Write(buffer, exchange, record);
        JsonLine.Write(buffer, exchange, record);
        buffer.ResetWrittenCount();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10; i++)
        {
            CombinedLine.Write(buffer, exchange, record);
            JsonLine.Write(buffer, exchange, record);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
