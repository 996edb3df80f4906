using System.Globalization;
using System.Text;

namespace Fulcrum.Frontend;

/// <summary>
/// The <c>Date: …\r\n</c> line of responses Fulcrum writes itself (RFC 9110 §6.6.1), made once a
/// second and shared: a request reads one reference.
/// </summary>
internal static class HttpDate
{
    private sealed record Line(long Second, byte[] Bytes);

    private static Line _current = Make(DateTimeOffset.UtcNow);

    private static Line Make(DateTimeOffset now) =>
        new(now.ToUnixTimeSeconds(), Encoding.ASCII.GetBytes("Date: " + now.ToString("R", CultureInfo.InvariantCulture) + "\r\n"));

    /// <summary>The header line for now, CRLF included.</summary>
    public static ReadOnlySpan<byte> HeaderLine
    {
        get
        {
            var line = Volatile.Read(ref _current);
            var now = DateTimeOffset.UtcNow;
            if (now.ToUnixTimeSeconds() != line.Second)
            {
                line = Make(now);
                Volatile.Write(ref _current, line);
            }
            return line.Bytes;
        }
    }
}
