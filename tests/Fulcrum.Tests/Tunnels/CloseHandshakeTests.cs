using System.Diagnostics;
using System.Net.WebSockets;
using Fulcrum.Tests.Integration;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Tunnels;

/// <summary>
/// Once close frames have crossed both ways the WebSocket closing handshake is over (RFC 6455
/// §7.1.1): the tunnel ends at once, so the client sees its TCP close (or END_STREAM) as fast as
/// it would directly, not after a grace period. A side that vanishes without a close frame is
/// reported to the other in WebSocket terms.
/// </summary>
/// <remarks>Serial: it times closes against a one-second bound, which a load test beside it on two cores can eat.</remarks>
[Collection(nameof(SerialTests))]
public sealed class CloseHandshakeTests
{
    /// <summary>ClientWebSocket waits up to a second for the server to hang up after the close frames: the old grace showed as exactly that (996 to 1004 ms); a prompt close is a few ms, with room here for a loaded machine.</summary>
    private static readonly TimeSpan Prompt = TimeSpan.FromMilliseconds(800);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_client_close_ends_as_soon_as_the_close_frames_have_crossed(bool http2) =>
        await PromptCloseAsync(http2, async socket => Assert.Equal("ping", await WebSocketClient.EchoAsync(socket, "ping")));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_backend_close_ends_as_soon_as_the_client_has_answered(bool http2) =>
        await PromptCloseAsync(http2, socket => BackendClosesAsync(socket, "close-me"));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_backend_that_hangs_up_after_its_close_lets_the_client_go_once_it_answers(bool http2) =>
        await PromptCloseAsync(http2, socket => BackendClosesAsync(socket, "close-and-leave"));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_backend_that_vanishes_without_a_close_frame_is_reported_to_the_client_as_1001_with_a_reason(bool http2)
    {
        await using var echo = await EchoThroughFulcrumAsync(http2);
        using var socket = await WebSocketClient.ConnectAsync(echo.Proxy.BaseUri, http2: echo.Invoker);
        await WebSocketClient.SendTextAsync(socket, "vanish");
        var (type, _) = await WebSocketClient.ReceiveAsync(socket);
        Assert.Equal(WebSocketMessageType.Close, type);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, socket.CloseStatus);
        Assert.Equal("the backend closed the connection", socket.CloseStatusDescription);
        var line = await echo.Proxy.Log.WaitForAsync(l => l.TryGetProperty("tunnel_closed_by", out var by) && by.GetString() == "backend_gone");
        Assert.Equal(http2 ? 200 : 101, line.GetProperty("status").GetInt32());
    }

    /// <summary>Has the backend start the close (the client has its close frame once this returns).</summary>
    private static async Task BackendClosesAsync(ClientWebSocket socket, string command)
    {
        await WebSocketClient.SendTextAsync(socket, command);
        var (type, _) = await WebSocketClient.ReceiveAsync(socket);
        Assert.Equal(WebSocketMessageType.Close, type);
    }

    /// <summary>
    /// Three rounds of: connect, <paramref name="before"/>, then the client's CloseAsync, which
    /// must be prompt after the first round (that one pays for warm-up).
    /// </summary>
    private static async Task PromptCloseAsync(bool http2, Func<ClientWebSocket, Task> before)
    {
        await using var echo = await EchoThroughFulcrumAsync(http2);
        for (var round = 0; round < 3; round++)
        {
            using var socket = await WebSocketClient.ConnectAsync(echo.Proxy.BaseUri, http2: echo.Invoker);
            await before(socket);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var watch = Stopwatch.StartNew();
            // After a backend's close, answering it completes the handshake; the client then waits for the hang-up.
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
            watch.Stop();
            Assert.Equal(WebSocketState.Closed, socket.State);
            Assert.True(round == 0 || watch.Elapsed < Prompt, $"round {round}: the close took {watch.ElapsedMilliseconds} ms through Fulcrum");
        }
        await WebSocketTests.Eventually(() => echo.Proxy.Server.Runtime.Tunnels.Count == 0);
    }

    private static async Task<EchoSetup> EchoThroughFulcrumAsync(bool http2)
    {
        var echo = new WebSocketEcho();
        var backend = await TestBackend.StartAsync("echo", echo.Handler("echo"));
        var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]), listenerProtocol: http2 ? "h2c" : "http");
        return new EchoSetup(backend, proxy, http2 ? WebSocketClient.Http2Invoker() : null);
    }

    /// <summary>A WebSocket echo backend with Fulcrum in front, over HTTP/1.1 or h2c.</summary>
    private sealed record EchoSetup(TestBackend Backend, TestProxy Proxy, HttpMessageInvoker? Invoker) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Invoker?.Dispose();
            await Proxy.DisposeAsync();
            await Backend.DisposeAsync();
        }
    }
}
