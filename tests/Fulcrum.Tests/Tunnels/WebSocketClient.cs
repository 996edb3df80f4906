using System.Net;
using System.Net.WebSockets;
using System.Text;

namespace Fulcrum.Tests.Tunnels;

/// <summary>ClientWebSocket helpers: connect through Fulcrum over HTTP/1.1 or HTTP/2, send and receive whole messages.</summary>
internal static class WebSocketClient
{
    public static async Task<ClientWebSocket> ConnectAsync(Uri proxy, string path = "/ws", HttpMessageInvoker? http2 = null, Action<ClientWebSocketOptions>? configure = null)
    {
        var socket = new ClientWebSocket();
        configure?.Invoke(socket.Options);
        var uri = new Uri($"ws://{proxy.Authority}{path}");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        if (http2 is not null)
        {
            socket.Options.HttpVersion = HttpVersion.Version20;
            socket.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
            await socket.ConnectAsync(uri, http2, timeout.Token);
        }
        else
        {
            await socket.ConnectAsync(uri, timeout.Token);
        }
        return socket;
    }

    /// <summary>An invoker for WebSockets over HTTP/2 by prior knowledge (h2c); keep it alive while its sockets are.</summary>
    public static HttpMessageInvoker Http2Invoker() => new(new SocketsHttpHandler { UseProxy = false });

    public static Task SendTextAsync(WebSocket socket, string text) =>
        socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    /// <summary>Receives one whole message (or the close), within <paramref name="timeoutMs"/>.</summary>
    public static async Task<(WebSocketMessageType Type, byte[] Data)> ReceiveAsync(WebSocket socket, int timeoutMs = 15_000)
    {
        using var timeout = new CancellationTokenSource(timeoutMs);
        using var message = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var received = await socket.ReceiveAsync(buffer, timeout.Token);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return (WebSocketMessageType.Close, []);
            }
            message.Write(buffer, 0, received.Count);
            if (received.EndOfMessage)
            {
                return (received.MessageType, message.ToArray());
            }
        }
    }

    public static async Task<string> ReceiveTextAsync(WebSocket socket, int timeoutMs = 15_000)
    {
        var (type, data) = await ReceiveAsync(socket, timeoutMs);
        Assert.Equal(WebSocketMessageType.Text, type);
        return Encoding.UTF8.GetString(data);
    }

    public static async Task<string> EchoAsync(WebSocket socket, string text)
    {
        await SendTextAsync(socket, text);
        return await ReceiveTextAsync(socket);
    }
}
