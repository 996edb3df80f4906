using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Fulcrum.Conformance;

/// <summary>A response read back off the wire.</summary>
internal sealed record WireResponse(int Status, string Head, byte[] Body);

/// <summary>Sends raw bytes and parses the HTTP/1.1 responses that come back, as a strict client would.</summary>
internal static class RawExchange
{
    public static async Task<(List<WireResponse> Responses, bool Closed)> SendAsync(IPEndPoint endPoint, byte[] head, byte[] rest, bool firstIsHead, int expectedResponses, int timeoutMs)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint);
        var data = new List<byte>();
        var buffer = new byte[16384];
        await socket.SendAsync(head);
        // Wait briefly for a refusal of the head alone before sending the rest.
        using (var early = new CancellationTokenSource(150))
        {
            try
            {
                var n = await socket.ReceiveAsync(buffer, early.Token);
                if (n == 0)
                {
                    return (Finish(data, firstIsHead), true);
                }
                data.AddRange(buffer.AsSpan(0, n));
            }
            catch (OperationCanceledException)
            {
            }
            catch (SocketException)
            {
                return (Finish(data, firstIsHead), true);
            }
        }
        try
        {
            await socket.SendAsync(rest);
        }
        catch (SocketException)
        {
            // The server may close while we are still sending a refused request: read what it said.
        }
        var responses = new List<WireResponse>();
        Parse(data, responses, firstIsHead);
        var closed = false;
        using var deadline = new CancellationTokenSource(timeoutMs);
        while (true)
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (SocketException)
            {
                closed = true;
                break;
            }
            if (n == 0)
            {
                closed = true;
                break;
            }
            data.AddRange(buffer.AsSpan(0, n));
            Parse(data, responses, firstIsHead);
            if (responses.Count >= expectedResponses)
            {
                // Give the server a moment to close the connection if it is going to.
                using var linger = new CancellationTokenSource(300);
                try
                {
                    closed = await socket.ReceiveAsync(buffer, linger.Token) == 0;
                }
                catch (OperationCanceledException)
                {
                }
                catch (SocketException)
                {
                    closed = true;
                }
                break;
            }
        }
        return (responses, closed);
    }

    private static List<WireResponse> Finish(List<byte> data, bool firstIsHead)
    {
        var responses = new List<WireResponse>();
        Parse(data, responses, firstIsHead);
        return responses;
    }

    /// <summary>Takes every complete response off the front of <paramref name="data"/>.</summary>
    /// <remarks>A response to HEAD has no body whatever its Content-Length says (RFC 9110 §9.3.2).</remarks>
    private static void Parse(List<byte> data, List<WireResponse> responses, bool firstIsHead)
    {
        while (true)
        {
            var bytes = data.ToArray();
            var text = Encoding.Latin1.GetString(bytes);
            var headEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (headEnd < 0)
            {
                return;
            }
            var head = text[..headEnd];
            var status = int.TryParse(head.AsSpan(9, 3), out var s) ? s : 0;
            var bodyStart = headEnd + 4;
            int consumed;
            byte[] body;
            var length = HeaderValue(head, "Content-Length");
            if (status is 100 or 101 or 204 or 304 || (firstIsHead && responses.Count == 0))
            {
                consumed = bodyStart;
                body = [];
            }
            else if (HeaderValue(head, "Transfer-Encoding") is { } te && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            {
                var (ok, end, decoded) = Dechunk(bytes, bodyStart);
                if (!ok)
                {
                    return;
                }
                consumed = end;
                body = decoded;
            }
            else if (length is not null && int.TryParse(length, out var n))
            {
                if (bytes.Length < bodyStart + n)
                {
                    return;
                }
                consumed = bodyStart + n;
                body = bytes[bodyStart..consumed];
            }
            else
            {
                consumed = bodyStart;
                body = [];
            }
            if (status != 100)
            {
                responses.Add(new WireResponse(status, head, body));
            }
            data.RemoveRange(0, consumed);
        }
    }

    private static (bool Ok, int End, byte[] Body) Dechunk(byte[] bytes, int start)
    {
        var body = new List<byte>();
        var i = start;
        while (true)
        {
            var lineEnd = IndexOf(bytes, i);
            if (lineEnd < 0)
            {
                return (false, 0, []);
            }
            var sizeText = Encoding.Latin1.GetString(bytes, i, lineEnd - i).Split(';')[0].Trim();
            var size = Convert.ToInt32(sizeText, 16);
            i = lineEnd + 2;
            if (size == 0)
            {
                // Trailers, then the final CRLF.
                while (true)
                {
                    var end = IndexOf(bytes, i);
                    if (end < 0)
                    {
                        return (false, 0, []);
                    }
                    var empty = end == i;
                    i = end + 2;
                    if (empty)
                    {
                        return (true, i, body.ToArray());
                    }
                }
            }
            if (bytes.Length < i + size + 2)
            {
                return (false, 0, []);
            }
            body.AddRange(bytes.AsSpan(i, size));
            i += size + 2;
        }
    }

    private static int IndexOf(byte[] bytes, int from)
    {
        for (var i = from; i + 1 < bytes.Length; i++)
        {
            if (bytes[i] == '\r' && bytes[i + 1] == '\n')
            {
                return i;
            }
        }
        return -1;
    }

    private static string? HeaderValue(string head, string name)
    {
        foreach (var line in head.Split("\r\n").Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && line[..colon].Equals(name, StringComparison.OrdinalIgnoreCase))
            {
                return line[(colon + 1)..].Trim();
            }
        }
        return null;
    }
}
