using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.TestSupport;

/// <summary>
/// A WebSocket echo for <see cref="TestBackend"/>: every message comes back as it was sent,
/// fragment by fragment. The text message "close-me" makes the server start the close handshake
/// (1000, "server says bye"); "close-and-leave" sends that close and hangs up without waiting;
/// "vanish" drops the connection with no close frame, as a crashed backend does. It counts open sockets and records how each ended.
/// </summary>
public sealed class WebSocketEcho
{
    private int _open;
    private int _accepted;

    public int Open => Volatile.Read(ref _open);

    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>The close status each socket received from its client side (null: no close frame, the connection dropped).</summary>
    public ConcurrentQueue<WebSocketCloseStatus?> Closes { get; } = new();

    public RequestDelegate Handler(string name) => async context =>
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await context.Response.WriteAsync(name);
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        Interlocked.Increment(ref _open);
        Interlocked.Increment(ref _accepted);
        var buffer = new byte[64 * 1024];
        WebSocketCloseStatus? closedWith = null;
        try
        {
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, CancellationToken.None);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    closedWith = received.CloseStatus;
                    await socket.CloseOutputAsync(received.CloseStatus ?? WebSocketCloseStatus.NormalClosure, received.CloseStatusDescription, CancellationToken.None);
                    return;
                }
                if (received.MessageType == WebSocketMessageType.Text && received.EndOfMessage && Encoding.UTF8.GetString(buffer, 0, received.Count) == "close-me")
                {
                    await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "server says bye", CancellationToken.None);
                    closedWith = socket.CloseStatus;
                    return;
                }
                if (received.MessageType == WebSocketMessageType.Text && received.EndOfMessage && Encoding.UTF8.GetString(buffer, 0, received.Count) == "vanish")
                {
                    // A backend that stops or crashes: the connection goes with no close frame.
                    context.Abort();
                    return;
                }
                if (received.MessageType == WebSocketMessageType.Text && received.EndOfMessage && Encoding.UTF8.GetString(buffer, 0, received.Count) == "close-and-leave")
                {
                    // A server that sends its close and hangs up without waiting for the answer.
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye, not waiting", CancellationToken.None);
                    closedWith = WebSocketCloseStatus.NormalClosure;
                    return;
                }
                if (received.MessageType == WebSocketMessageType.Text && received.EndOfMessage && Encoding.UTF8.GetString(buffer, 0, received.Count) == "who")
                {
                    await socket.SendAsync(Encoding.UTF8.GetBytes(name), WebSocketMessageType.Text, true, CancellationToken.None);
                    continue;
                }
                await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, CancellationToken.None);
            }
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException)
        {
        }
        finally
        {
            Closes.Enqueue(closedWith);
            Interlocked.Decrement(ref _open);
        }
    };
}
