using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Fulcrum.Forwarding;

/// <summary>
/// Follows the WebSocket framing (RFC 6455 §5.2) of bytes relayed one way, without buffering
/// them, so Fulcrum knows when the stream sits between two frames: the only place a close frame
/// of its own may be put. It also notes a close frame passing, after which no other may be sent.
/// </summary>
internal sealed class WebSocketFrameTracker
{
    private readonly byte[] _header = new byte[14];
    private int _headerHave;
    private int _headerNeed = 2;
    private long _payloadLeft;

    /// <summary>True between frames: no header or payload bytes of a frame are outstanding.</summary>
    public bool AtBoundary => _headerHave == 0 && _payloadLeft == 0;

    /// <summary>A close frame has gone this way: the sender has closed its side.</summary>
    public bool CloseSeen { get; private set; }

    /// <summary>Set when the bytes cannot be WebSocket frames (a 64-bit length with its top bit set).</summary>
    public bool Lost { get; private set; }

    public void Feed(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0 && !Lost)
        {
            if (_payloadLeft > 0)
            {
                var skip = (int)Math.Min(_payloadLeft, data.Length);
                _payloadLeft -= skip;
                data = data[skip..];
                continue;
            }
            var take = Math.Min(_headerNeed - _headerHave, data.Length);
            data[..take].CopyTo(_header.AsSpan(_headerHave));
            _headerHave += take;
            data = data[take..];
            if (_headerHave < _headerNeed)
            {
                continue;
            }
            if (_headerNeed == 2)
            {
                // The first two bytes say how long the rest of the header is.
                var length7 = _header[1] & 0x7F;
                var masked = (_header[1] & 0x80) != 0;
                _headerNeed = 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + (masked ? 4 : 0);
                if (_headerNeed > 2)
                {
                    continue;
                }
            }
            var length = (long)(_header[1] & 0x7F);
            if (length == 126)
            {
                length = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2));
            }
            else if (length == 127)
            {
                var big = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2));
                if (big > long.MaxValue)
                {
                    Lost = true;
                    return;
                }
                length = (long)big;
            }
            if ((_header[0] & 0x0F) == 0x8)
            {
                CloseSeen = true;
            }
            _payloadLeft = length;
            _headerHave = 0;
            _headerNeed = 2;
        }
    }
}

/// <summary>The WebSocket pieces Fulcrum writes itself: close frames and handshake keys.</summary>
internal static class WebSocketFrames
{
    /// <summary>1001: the endpoint is going away (a server going down, a backend drained).</summary>
    public const ushort GoingAway = 1001;

    private const string AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    /// <summary>
    /// A close frame with <paramref name="code"/> and a short reason. A frame to a server must be
    /// masked (RFC 6455 §5.3); one to a client must not.
    /// </summary>
    public static byte[] Close(ushort code, string reason, bool masked)
    {
        var text = Encoding.UTF8.GetBytes(reason);
        var payloadLength = 2 + Math.Min(text.Length, 123); // control frames carry at most 125 bytes
        var frame = new byte[2 + (masked ? 4 : 0) + payloadLength];
        frame[0] = 0x88; // FIN + opcode 8 (close)
        frame[1] = (byte)(payloadLength | (masked ? 0x80 : 0));
        var payload = frame.AsSpan(2 + (masked ? 4 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(payload, code);
        text.AsSpan(0, payloadLength - 2).CopyTo(payload[2..]);
        if (masked)
        {
            var key = frame.AsSpan(2, 4);
            RandomNumberGenerator.Fill(key);
            for (var i = 0; i < payload.Length; i++)
            {
                payload[i] ^= key[i & 3];
            }
        }
        return frame;
    }

    /// <summary>A fresh Sec-WebSocket-Key: 16 random bytes, base64.</summary>
    public static string NewKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));

    /// <summary>The Sec-WebSocket-Accept a server must answer <paramref name="key"/> with (RFC 6455 §4.2.2).</summary>
    public static string AcceptFor(string key) =>
        Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + AcceptGuid)));
}
