using System.Diagnostics;
using System.Net.WebSockets;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Tunnels;

/// <summary>
/// Once close frames have crossed both ways the WebSocket closing handshake is over (RFC 6455
/// §7.1.1): the tunnel ends at once, so the client sees its TCP close (or END_STREAM) as fast as
/// it would directly, not after a grace period.
/// </summary>
public sealed class CloseHandshakeTests
{
    /// <summary>ClientWebSocket waits up to a second for the server to hang up after the close frames: the old grace showed as exactly that.</summary>
    private static readonly TimeSpan Prompt = TimeSpan.FromMilliseconds(400);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_client_close_ends_as_soon_as_the_close_frames_have_crossed(bool http2)
    {
        var echo = new WebSocketEcho();
        await using var backend = await TestBackend.StartAsync("echo", echo.Handler("echo"));
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]), listenerProtocol: http2 ? "h2c" : "http");
        using var invoker = http2 ? WebSocketClient.Http2Invoker() : null;

        // Three rounds: the first pays for warm-up, each must be prompt.
        for (var round = 0; round < 3; round++)
        {
            using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker);
            Assert.Equal("ping", await WebSocketClient.EchoAsync(socket, "ping"));
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var watch = Stopwatch.StartNew();
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
            watch.Stop();
            Assert.Equal(WebSocketState.Closed, socket.State);
            Assert.True(round == 0 || watch.Elapsed < Prompt, $"round {round}: the close took {watch.ElapsedMilliseconds} ms through Fulcrum");
        }
        await WebSocketTests.Eventually(() => proxy.Server.Runtime.Tunnels.Count == 0);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_backend_close_ends_as_soon_as_the_client_has_answered(bool http2) =>
        await BackendCloseAsync(http2, "close-me");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_backend_that_hangs_up_after_its_close_lets_the_client_go_once_it_answers(bool http2) =>
        await BackendCloseAsync(http2, "close-and-leave");

    private static async Task BackendCloseAsync(bool http2, string command)
    {
        var echo = new WebSocketEcho();
        await using var backend = await TestBackend.StartAsync("echo", echo.Handler("echo"));
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]), listenerProtocol: http2 ? "h2c" : "http");
        using var invoker = http2 ? WebSocketClient.Http2Invoker() : null;

        for (var round = 0; round < 3; round++)
        {
            using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker);
            await WebSocketClient.SendTextAsync(socket, command);
            var (type, _) = await WebSocketClient.ReceiveAsync(socket);
            Assert.Equal(WebSocketMessageType.Close, type);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var watch = Stopwatch.StartNew();
            // Answering the server's close completes the handshake; the client then waits for the hang-up.
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token);
            watch.Stop();
            Assert.Equal(WebSocketState.Closed, socket.State);
            Assert.True(round == 0 || watch.Elapsed < Prompt, $"round {round}: the close took {watch.ElapsedMilliseconds} ms through Fulcrum");
        }
        await WebSocketTests.Eventually(() => proxy.Server.Runtime.Tunnels.Count == 0);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_backend_that_vanishes_without_a_close_frame_is_reported_to_the_client_as_1001_with_a_reason(bool http2)
    {
        var echo = new WebSocketEcho();
        await using var backend = await TestBackend.StartAsync("echo", echo.Handler("echo"));
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]), listenerProtocol: http2 ? "h2c" : "http");
        using var invoker = http2 ? WebSocketClient.Http2Invoker() : null;
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker);
        await WebSocketClient.SendTextAsync(socket, "vanish");
        var (type, _) = await WebSocketClient.ReceiveAsync(socket);
        Assert.Equal(WebSocketMessageType.Close, type);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, socket.CloseStatus);
        Assert.Equal("the backend closed the connection", socket.CloseStatusDescription);
        var line = await proxy.Log.WaitForAsync(l => l.TryGetProperty("tunnel_closed_by", out var by) && by.GetString() == "backend_gone");
        Assert.Equal(http2 ? 200 : 101, line.GetProperty("status").GetInt32());
    }
}
