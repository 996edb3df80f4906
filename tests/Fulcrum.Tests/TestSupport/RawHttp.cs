using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Fulcrum.Tests.TestSupport;

/// <summary>The bytes a raw exchange got back, and whether the server closed the connection.</summary>
public sealed record RawResponse(string Text, bool Closed)
{
    public int Status => Text.Length >= 12 && int.TryParse(Text.AsSpan(9, 3), out var s) ? s : 0;

    public string? Header(string name)
    {
        foreach (var line in Text.Split("\r\n"))
        {
            if (line.Length == 0)
            {
                break;
            }
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && line[..colon].Equals(name, StringComparison.OrdinalIgnoreCase))
            {
                return line[(colon + 1)..].Trim();
            }
        }
        return null;
    }
}

/// <summary>Raw socket exchanges, for bytes no well-behaved client would send.</summary>
public static class RawHttp
{
    /// <summary>
    /// Sends <paramref name="request"/> as Latin-1 bytes and reads until the server closes the
    /// connection or <paramref name="idleMs"/> pass with nothing more to read. The first byte
    /// gets at least <see cref="FirstByteMs"/>: on a loaded CI machine an answer can take seconds
    /// to start, and a missing answer must not look like an empty one.
    /// </summary>
    public static async Task<RawResponse> SendAsync(IPEndPoint endPoint, string request, int idleMs = 1500)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint);
        await socket.SendAsync(Encoding.Latin1.GetBytes(request));
        return await ReadAsync(socket, idleMs);
    }

    public const int FirstByteMs = 20_000;

    public static async Task<RawResponse> ReadAsync(Socket socket, int idleMs)
    {
        var received = new MemoryStream();
        var buffer = new byte[16384];
        while (true)
        {
            using var idle = new CancellationTokenSource(received.Length == 0 ? Math.Max(idleMs, FirstByteMs) : idleMs);
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, idle.Token);
            }
            catch (OperationCanceledException)
            {
                return new RawResponse(Encoding.Latin1.GetString(received.ToArray()), Closed: false);
            }
            catch (SocketException)
            {
                return new RawResponse(Encoding.Latin1.GetString(received.ToArray()), Closed: true);
            }
            if (n == 0)
            {
                return new RawResponse(Encoding.Latin1.GetString(received.ToArray()), Closed: true);
            }
            received.Write(buffer, 0, n);
        }
    }
}
