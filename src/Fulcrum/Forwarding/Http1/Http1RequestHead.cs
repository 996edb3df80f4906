using System.Globalization;
using System.Net;
using System.Text;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Fulcrum.Runtime;

namespace Fulcrum.Forwarding.Http1;

/// <summary>
/// Writes the request head sent upstream, straight into the connection's send buffer: the same
/// header rules the SocketsHttpHandler path applies through <see cref="HeaderRules"/> (hop-by-hop
/// headers dropped, "TE: trailers" kept, Host per the pool's mode, X-Forwarded-*, X-Request-Id,
/// W3C trace context), without building a request message or a header store.
/// </summary>
internal static class Http1RequestHead
{
    /// <summary>Headers the head writes itself, whatever the client sent.</summary>
    internal static bool IsReplaced(string name) =>
        name.Length switch
        {
            4 => string.Equals(name, "Host", StringComparison.OrdinalIgnoreCase),
            11 => string.Equals(name, "traceparent", StringComparison.OrdinalIgnoreCase),
            10 => string.Equals(name, "tracestate", StringComparison.OrdinalIgnoreCase),
            12 => string.Equals(name, HeaderRules.RequestIdHeader, StringComparison.OrdinalIgnoreCase),
            14 => string.Equals(name, "Content-Length", StringComparison.OrdinalIgnoreCase),
            15 => string.Equals(name, "X-Forwarded-For", StringComparison.OrdinalIgnoreCase),
            16 => string.Equals(name, "X-Forwarded-Host", StringComparison.OrdinalIgnoreCase),
            17 => string.Equals(name, "X-Forwarded-Proto", StringComparison.OrdinalIgnoreCase),
            20 => string.Equals(name, HeaderRules.ClientCertSha256Header, StringComparison.OrdinalIgnoreCase),
            21 => string.Equals(name, HeaderRules.ClientCertSubjectHeader, StringComparison.OrdinalIgnoreCase),
            _ => false,
        };

    /// <summary>The headers the upstream head writes itself by their bytes (as a front end that keeps the head as bytes reads it).</summary>
    internal static bool IsReplaced(ReadOnlySpan<byte> name) =>
        name.Length switch
        {
            4 => System.Text.Ascii.EqualsIgnoreCase(name, "Host"u8),
            10 => System.Text.Ascii.EqualsIgnoreCase(name, "tracestate"u8),
            11 => System.Text.Ascii.EqualsIgnoreCase(name, "traceparent"u8),
            12 => System.Text.Ascii.EqualsIgnoreCase(name, "X-Request-Id"u8),
            14 => System.Text.Ascii.EqualsIgnoreCase(name, "Content-Length"u8),
            15 => System.Text.Ascii.EqualsIgnoreCase(name, "X-Forwarded-For"u8),
            16 => System.Text.Ascii.EqualsIgnoreCase(name, "X-Forwarded-Host"u8),
            17 => System.Text.Ascii.EqualsIgnoreCase(name, "X-Forwarded-Proto"u8),
            20 => System.Text.Ascii.EqualsIgnoreCase(name, "X-Client-Cert-Sha256"u8),
            21 => System.Text.Ascii.EqualsIgnoreCase(name, "X-Client-Cert-Subject"u8),
            _ => false,
        };

    /// <summary>
    /// Writes the head into <paramref name="buffer"/> (replaced by a larger one when it does not
    /// fit) and returns its length. A body is framed by <paramref name="contentLength"/> when
    /// known, else <paramref name="chunked"/>; with neither there is no body.
    /// </summary>
    public static int Write(ref byte[] buffer, ProxyExchange incoming, PoolConfig pool, BackendState backend, RequestRecord record, long? contentLength, bool chunked)
    {
        var writer = new HeadWriter(buffer);
        writer.Latin1(incoming.Method);
        writer.Byte((byte)' ');
        writer.Latin1(incoming.UpstreamTarget);
        writer.Ascii(" HTTP/1.1\r\nHost: "u8);
        var authority = incoming.Authority;
        writer.Latin1(pool.HostHeader == HostHeaderMode.Preserve && !string.IsNullOrEmpty(authority) ? authority : backend.Authority);
        writer.Ascii("\r\n"u8);

        incoming.WriteHeaders(ref writer);

        var client = incoming.RemoteIp;
        if (client is not null)
        {
            if (client.IsIPv4MappedToIPv6)
            {
                client = client.MapToIPv4();
            }
            writer.Ascii("X-Forwarded-For: "u8);
            var prior = incoming.Header("X-Forwarded-For");
            for (var i = 0; i < prior.Count; i++)
            {
                writer.Latin1(prior[i]);
                writer.Ascii(", "u8);
            }
            writer.Address(client);
            writer.Ascii("\r\n"u8);
        }
        writer.Ascii("X-Forwarded-Proto: "u8);
        writer.Latin1(incoming.Scheme);
        writer.Ascii("\r\n"u8);
        if (!string.IsNullOrEmpty(authority))
        {
            writer.Ascii("X-Forwarded-Host: "u8);
            writer.Latin1(authority);
            writer.Ascii("\r\n"u8);
        }
        if (incoming.Tls is { ForwardClientCert: true, ClientSubject: { } subject, ClientSha256: { } sha256 })
        {
            writer.Ascii("X-Client-Cert-Subject: "u8);
            writer.Latin1(HeaderRules.ClientCertSubject(subject));
            writer.Ascii("\r\nX-Client-Cert-Sha256: "u8);
            writer.Latin1(sha256);
            writer.Ascii("\r\n"u8);
        }
        writer.Ascii("X-Request-Id: "u8);
        writer.Latin1(record.RequestIdText);
        writer.Ascii("\r\ntraceparent: "u8);
        writer.Latin1(record.TraceParentText);
        writer.Ascii("\r\n"u8);
        if (record.TraceState is { Length: > 0 } state)
        {
            writer.Ascii("tracestate: "u8);
            writer.Latin1(state);
            writer.Ascii("\r\n"u8);
        }
        if (contentLength is { } length)
        {
            writer.Ascii("Content-Length: "u8);
            writer.Number(length);
            writer.Ascii("\r\n"u8);
        }
        else if (chunked)
        {
            writer.Ascii("Transfer-Encoding: chunked\r\n"u8);
        }
        writer.Ascii("\r\n"u8);
        buffer = writer.Buffer;
        return writer.Position;
    }

    /// <summary>
    /// The end-to-end headers of a request read into a header dictionary (Kestrel's), each on one
    /// line: several values as SocketsHttpHandler sends them, cookies (several crumbs from an
    /// HTTP/2 client) joined with "; " (RFC 9113 §8.2.3).
    /// </summary>
    internal static void WriteHeaders(ref HeadWriter writer, Microsoft.AspNetCore.Http.IHeaderDictionary headers)
    {
        var connection = headers.Connection;
        foreach (var header in headers)
        {
            var name = header.Key;
            if (name.Length == 0 || name[0] == ':' || IsReplaced(name))
            {
                continue;
            }
            if (HeaderRules.IsHopByHop(name, connection))
            {
                if (string.Equals(name, "TE", StringComparison.OrdinalIgnoreCase) && HeaderRules.IsTrailersOnly(header.Value))
                {
                    writer.Ascii("TE: trailers\r\n"u8);
                }
                continue;
            }
            writer.Latin1(name);
            writer.Ascii(": "u8);
            var values = header.Value;
            var separator = string.Equals(name, "Cookie", StringComparison.OrdinalIgnoreCase) ? "; "u8 : ", "u8;
            for (var i = 0; i < values.Count; i++)
            {
                if (i > 0)
                {
                    writer.Ascii(separator);
                }
                writer.Latin1(values[i]);
            }
            writer.Ascii("\r\n"u8);
        }
    }
}

/// <summary>Appends to a byte array, growing it (the grown one is kept by the connection).</summary>
internal ref struct HeadWriter(byte[] buffer)
{
    public byte[] Buffer = buffer;
    public int Position;

    private Span<byte> Room(int count)
    {
        if (Buffer.Length - Position < count)
        {
            Array.Resize(ref Buffer, Math.Max(Buffer.Length * 2, Position + count));
        }
        return Buffer.AsSpan(Position);
    }

    public void Byte(byte b)
    {
        Room(1)[0] = b;
        Position++;
    }

    public void Ascii(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Room(bytes.Length));
        Position += bytes.Length;
    }

    /// <summary>Each character as one byte, as Kestrel read it (values are Latin-1 both ways).</summary>
    public void Latin1(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return;
        }
        Position += Encoding.Latin1.GetBytes(text, Room(text.Length));
    }

    public void Latin1(ReadOnlySpan<char> text)
    {
        if (!text.IsEmpty)
        {
            Position += Encoding.Latin1.GetBytes(text, Room(text.Length));
        }
    }

    public void Number(long value)
    {
        value.TryFormat(Room(20), out var written, default, CultureInfo.InvariantCulture);
        Position += written;
    }

    public void Address(IPAddress address)
    {
        address.TryFormat(Room(64), out var written);
        Position += written;
    }
}
