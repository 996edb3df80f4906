using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Fulcrum.Tls;

/// <summary>
/// What Fulcrum reads from a TLS ClientHello before the handshake (RFC 8446 §4.1.2; the record
/// layer of §5.1): the server name (SNI, RFC 6066 §3) and the ALPN protocols offered (RFC 7301).
/// It reads the bytes without consuming them, so the handshake that follows sees them whole.
/// </summary>
internal readonly record struct ClientHello(ClientHelloStatus Status, string? ServerName, IReadOnlyList<string> Alpn, string? Problem = null)
{
    /// <summary>Past this a ClientHello is refused: real ones, post-quantum key shares included, are under 8 KiB.</summary>
    public const int MaxLength = 64 * 1024;

    private static readonly string[] NoProtocols = [];

    /// <summary>Reads a ClientHello from the start of <paramref name="buffer"/>.</summary>
    public static ClientHello Parse(ReadOnlySequence<byte> buffer)
    {
        if (buffer.IsEmpty)
        {
            return new(ClientHelloStatus.NeedMore, null, NoProtocols);
        }
        var first = buffer.FirstSpan[0];
        if (first != 0x16)
        {
            return new(ClientHelloStatus.NotTls, null, NoProtocols, $"the first byte is 0x{first:x2}, not a TLS handshake record (0x16)");
        }
        if (!Whole(buffer))
        {
            return new(ClientHelloStatus.NeedMore, null, NoProtocols);
        }
        // Gather the handshake message from as many records as it spans.
        var handshake = new ArrayBufferWriter<byte>(512);
        var reader = new SequenceReader<byte>(buffer);
        var needed = -1;
        while (needed < 0 || handshake.WrittenCount < needed)
        {
            if (reader.Remaining < 5)
            {
                return new(ClientHelloStatus.NeedMore, null, NoProtocols);
            }
            reader.TryRead(out var type);
            reader.TryReadBigEndian(out short version);
            reader.TryReadBigEndian(out short length);
            if (type != 0x16)
            {
                return Malformed($"a record of type {type} came before the ClientHello was whole");
            }
            if ((version >> 8) != 3)
            {
                return Malformed($"record version 0x{version:x4} is not TLS");
            }
            if (length <= 0 || length > 16384 + 256)
            {
                return Malformed($"a record of {(ushort)length} bytes");
            }
            if (reader.Remaining < length)
            {
                return new(ClientHelloStatus.NeedMore, null, NoProtocols);
            }
            var fragment = reader.UnreadSequence.Slice(0, length);
            fragment.CopyTo(handshake.GetSpan(length));
            handshake.Advance(length);
            reader.Advance(length);
            if (needed < 0)
            {
                if (handshake.WrittenCount < 4)
                {
                    continue;
                }
                var head = handshake.WrittenSpan;
                if (head[0] != 1)
                {
                    return Malformed($"the first handshake message is of type {head[0]}, not a ClientHello (1)");
                }
                needed = 4 + ((head[1] << 16) | (head[2] << 8) | head[3]);
                if (needed > MaxLength)
                {
                    return Malformed($"a ClientHello of {needed} bytes");
                }
            }
        }
        return ParseBody(handshake.WrittenSpan[4..needed]);
    }

    /// <summary>
    /// Whether the records holding the whole ClientHello have arrived, read from their headers
    /// alone: a client that trickles its hello a byte at a time costs a header walk per read,
    /// not a copy of all it sent so far. Anything odd answers true, for the full parse to name it.
    /// </summary>
    private static bool Whole(ReadOnlySequence<byte> buffer)
    {
        var scan = new SequenceReader<byte>(buffer);
        long have = 0, need = -1;
        Span<byte> head = stackalloc byte[4];
        while (need < 0 || have < need)
        {
            if (scan.Remaining < 5)
            {
                return false;
            }
            scan.TryRead(out var type);
            scan.Advance(2);
            scan.TryReadBigEndian(out short length);
            if (type != 0x16 || length < 4 || length > 16384 + 256)
            {
                return true;
            }
            if (scan.Remaining < length)
            {
                return false;
            }
            if (need < 0)
            {
                scan.UnreadSequence.Slice(0, 4).CopyTo(head);
                need = 4 + ((head[1] << 16) | (head[2] << 8) | head[3]);
                if (head[0] != 1 || need > MaxLength)
                {
                    return true;
                }
            }
            have += length;
            scan.Advance(length);
        }
        return true;
    }

    private static ClientHello Malformed(string problem) => new(ClientHelloStatus.Malformed, null, NoProtocols, problem);

    private static ClientHello ParseBody(ReadOnlySpan<byte> body)
    {
        // legacy_version (2), random (32), session id, cipher suites, compression methods, extensions.
        var p = 34;
        if (!Skip(body, ref p, 1) || !Skip(body, ref p, 2) || !Skip(body, ref p, 1))
        {
            return Malformed("the ClientHello ends before its extensions");
        }
        if (p == body.Length)
        {
            return new(ClientHelloStatus.Ok, null, NoProtocols); // no extensions at all (an old client)
        }
        if (p + 2 > body.Length)
        {
            return Malformed("a truncated extensions length");
        }
        var end = p + 2 + BinaryPrimitives.ReadUInt16BigEndian(body[p..]);
        p += 2;
        if (end > body.Length)
        {
            return Malformed("the extensions run past the ClientHello");
        }
        string? name = null;
        List<string>? alpn = null;
        while (p < end)
        {
            if (p + 4 > end)
            {
                return Malformed("a truncated extension header");
            }
            var type = BinaryPrimitives.ReadUInt16BigEndian(body[p..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(body[(p + 2)..]);
            p += 4;
            if (p + length > end)
            {
                return Malformed($"extension {type} runs past the extensions");
            }
            var data = body.Slice(p, length);
            p += length;
            if (type == 0 && data.Length >= 5)
            {
                // server_name_list: one host_name entry (type 0) is all a client may send.
                var listLength = BinaryPrimitives.ReadUInt16BigEndian(data);
                if (listLength + 2 > data.Length || data[2] != 0)
                {
                    return Malformed("a malformed server_name extension");
                }
                var nameLength = BinaryPrimitives.ReadUInt16BigEndian(data[3..]);
                if (5 + nameLength > data.Length || nameLength == 0)
                {
                    return Malformed("a malformed server_name extension");
                }
                var bytes = data.Slice(5, nameLength);
                foreach (var b in bytes)
                {
                    if (b <= 0x20 || b >= 0x7f)
                    {
                        return Malformed("a server name that is not an ASCII host name");
                    }
                }
                name = Encoding.ASCII.GetString(bytes);
            }
            else if (type == 16 && data.Length >= 2)
            {
                var listLength = BinaryPrimitives.ReadUInt16BigEndian(data);
                if (listLength + 2 > data.Length)
                {
                    return Malformed("a malformed ALPN extension");
                }
                alpn = [];
                var q = 2;
                while (q < 2 + listLength)
                {
                    var n = data[q];
                    if (n == 0 || q + 1 + n > 2 + listLength)
                    {
                        return Malformed("a malformed ALPN extension");
                    }
                    alpn.Add(Encoding.ASCII.GetString(data.Slice(q + 1, n)));
                    q += 1 + n;
                }
            }
        }
        return new(ClientHelloStatus.Ok, name, alpn is null ? NoProtocols : alpn);
    }

    private static bool Skip(ReadOnlySpan<byte> body, ref int p, int lengthBytes)
    {
        if (p + lengthBytes > body.Length)
        {
            return false;
        }
        var length = lengthBytes == 1 ? body[p] : BinaryPrimitives.ReadUInt16BigEndian(body[p..]);
        p += lengthBytes + length;
        return p <= body.Length;
    }
}

internal enum ClientHelloStatus
{
    /// <summary>Not all of it has arrived.</summary>
    NeedMore,

    Ok,

    /// <summary>The connection does not start with a TLS handshake (plain HTTP, for one).</summary>
    NotTls,

    Malformed,
}
