using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Fulcrum.Observability;

/// <summary>
/// Writes one access log line, byte by byte, into one span the caller sized for the whole line:
/// the pieces the JSON and the combined formats share (numbers, milliseconds, the client
/// address). Each format adds its own quoting and escaping on top.
/// </summary>
internal ref struct LineWriter(Span<byte> span)
{
    private readonly Span<byte> _span = span;

    public int Position { get; private set; }

    public readonly Span<byte> Free => _span[Position..];

    /// <summary>Counts <paramref name="count"/> bytes written straight into <see cref="Free"/>.</summary>
    public void Advance(int count) => Position += count;

    public void Raw(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Free);
        Position += bytes.Length;
    }

    public void Byte(byte value)
    {
        _span[Position] = value;
        Position++;
    }

    /// <summary>Text the caller knows to be ASCII, one byte a character.</summary>
    public void Ascii(ReadOnlySpan<char> text)
    {
        System.Text.Ascii.FromUtf16(text, Free, out var written);
        Position += written;
    }

    /// <summary>Text as UTF-8 (up to three bytes a character); a lone surrogate becomes U+FFFD.</summary>
    public void Utf8(ReadOnlySpan<char> text) => Position += Encoding.UTF8.GetBytes(text, Free);

    public void Number(long value)
    {
        value.TryFormat(Free, out var written, default, CultureInfo.InvariantCulture);
        Position += written;
    }

    /// <summary>
    /// Milliseconds with three decimals, trailing zeros dropped, written from integers
    /// (formatting a double costs several times more); <paramref name="missing"/> when negative
    /// (not measured).
    /// </summary>
    public void Ms(double ms, ReadOnlySpan<byte> missing)
    {
        if (ms < 0)
        {
            Raw(missing);
            return;
        }
        var micros = (long)Math.Round(ms * 1000, MidpointRounding.AwayFromZero);
        var span = Free;
        var whole = micros / 1000;
        var fraction = (int)(micros - (whole * 1000));
        int n;
        if (whole < 10)
        {
            // Most times on a healthy proxy: one digit, no formatter call.
            span[0] = (byte)('0' + whole);
            n = 1;
        }
        else
        {
            whole.TryFormat(span, out n, default, CultureInfo.InvariantCulture);
        }
        if (fraction != 0)
        {
            span[n++] = (byte)'.';
            span[n++] = (byte)('0' + (fraction / 100));
            span[n++] = (byte)('0' + (fraction / 10 % 10));
            span[n++] = (byte)('0' + (fraction % 10));
            while (span[n - 1] == (byte)'0')
            {
                n--;
            }
        }
        Position += n;
    }

    /// <summary>The address, between double quotes when <paramref name="quoted"/>, or <paramref name="missing"/> when there is none.</summary>
    public void Address(IPAddress? address, bool quoted, ReadOnlySpan<byte> missing)
    {
        if (address is null)
        {
            Raw(missing);
            return;
        }
        var start = Position;
        if (quoted)
        {
            Byte((byte)'"');
        }
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            // Four numbers and three dots, written here: IPAddress's own formatter cost about a
            // tenth of the whole line.
            Span<byte> octets = stackalloc byte[4];
            address.TryWriteBytes(octets, out _);
            var span = Free;
            var n = 0;
            for (var i = 0; i < 4; i++)
            {
                if (i > 0)
                {
                    span[n++] = (byte)'.';
                }
                int octet = octets[i];
                if (octet >= 100)
                {
                    span[n++] = (byte)('0' + (octet / 100));
                }
                if (octet >= 10)
                {
                    span[n++] = (byte)('0' + (octet / 10 % 10));
                }
                span[n++] = (byte)('0' + (octet % 10));
            }
            Position += n;
        }
        else if (address.TryFormat(Free, out var written))
        {
            Position += written;
        }
        else
        {
            Position = start;
            Raw(missing);
            return;
        }
        if (quoted)
        {
            Byte((byte)'"');
        }
    }
}
