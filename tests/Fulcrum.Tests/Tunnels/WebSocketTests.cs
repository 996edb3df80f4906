using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Fulcrum.Tests.Tunnels;

/// <summary>WebSockets and other upgrades through Fulcrum to real Kestrel backends, over HTTP/1.1 and HTTP/2.</summary>
public sealed class WebSocketTests
{
    private static async Task<(TestBackend Backend, WebSocketEcho Echo)> EchoBackendAsync(string name = "echo")
    {
        var echo = new WebSocketEcho();
        return (await TestBackend.StartAsync(name, echo.Handler(name)), echo);
    }

    private static string Pool(TestBackend backend, string routeTimeouts = "") => TestProxy.SinglePool("round_robin", [backend.Address], routeExtra: routeTimeouts);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Text_binary_a_10_MiB_message_and_a_client_close_cross_unchanged(bool http2)
    {
        var (backend, echo) = await EchoBackendAsync();
        await using var _ = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend), listenerProtocol: http2 ? "h2c" : "http");
        using var invoker = http2 ? WebSocketClient.Http2Invoker() : null;
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker);

        Assert.Equal("hello through fulcrum", await WebSocketClient.EchoAsync(socket, "hello through fulcrum"));
        var binary = new byte[] { 0, 1, 2, 0xFF, 0xFE, 0x80, 13, 10 };
        await socket.SendAsync(binary, WebSocketMessageType.Binary, true, CancellationToken.None);
        var (type, data) = await WebSocketClient.ReceiveAsync(socket);
        Assert.Equal(WebSocketMessageType.Binary, type);
        Assert.Equal(binary, data);

        var big = new byte[10 << 20];
        new Random(42).NextBytes(big);
        var send = socket.SendAsync(big, WebSocketMessageType.Binary, true, CancellationToken.None);
        var (bigType, bigBack) = await WebSocketClient.ReceiveAsync(socket, 60_000);
        await send;
        Assert.Equal(WebSocketMessageType.Binary, bigType);
        Assert.True(big.AsSpan().SequenceEqual(bigBack), "the 10 MiB message came back changed");

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "client done", timeout.Token);
        Assert.Equal(WebSocketState.Closed, socket.State);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
        await Eventually(() => echo.Open == 0);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, Assert.Single(echo.Closes));
        await Eventually(() => proxy.Server.Runtime.Tunnels.Count == 0);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_close_started_by_the_backend_reaches_the_client(bool http2)
    {
        var (backend, _) = await EchoBackendAsync();
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend), listenerProtocol: http2 ? "h2c" : "http");
        using var invoker = http2 ? WebSocketClient.Http2Invoker() : null;
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker);
        await WebSocketClient.SendTextAsync(socket, "close-me");
        var (type, _) = await WebSocketClient.ReceiveAsync(socket);
        Assert.Equal(WebSocketMessageType.Close, type);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
        Assert.Equal("server says bye", socket.CloseStatusDescription);
        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        var line = await proxy.Log.WaitForAsync(l => l.TryGetProperty("tunnel", out _));
        Assert.Equal(http2 ? 200 : 101, line.GetProperty("status").GetInt32());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Pings_are_answered_through_the_tunnel(bool http2)
    {
        // The client pings every 100 ms and gives up when a pong takes over 1 s: three quiet
        // seconds later the socket still works only if every ping and pong crossed Fulcrum.
        var (backend, _) = await EchoBackendAsync();
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend), listenerProtocol: http2 ? "h2c" : "http");
        using var invoker = http2 ? WebSocketClient.Http2Invoker() : null;
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker, configure: o =>
        {
            o.KeepAliveInterval = TimeSpan.FromMilliseconds(100);
            o.KeepAliveTimeout = TimeSpan.FromSeconds(1);
        });
        var receive = WebSocketClient.ReceiveAsync(socket, 10_000);
        await Task.Delay(3000);
        Assert.False(receive.IsCompleted, "the socket ended while only pings were crossing");
        Assert.Equal(WebSocketState.Open, socket.State);
        await WebSocketClient.SendTextAsync(socket, "still here");
        Assert.Equal("still here", Encoding.UTF8.GetString((await receive).Data));
    }

    [Fact]
    public async Task A_socket_quiet_longer_than_the_request_idle_timeout_survives()
    {
        var (backend, _) = await EchoBackendAsync();
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend, "    timeouts: { idle: 500ms, response: 500ms }"));
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri);
        await Task.Delay(2000); // four request idle timeouts
        Assert.Equal("after the quiet", await WebSocketClient.EchoAsync(socket, "after the quiet"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_socket_quiet_past_tunnel_idle_is_closed_with_going_away_both_ways(bool http2)
    {
        var (backend, echo) = await EchoBackendAsync();
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend, "    timeouts: { tunnel_idle: 1s }"), listenerProtocol: http2 ? "h2c" : "http");
        using var invoker = http2 ? WebSocketClient.Http2Invoker() : null;
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker);
        Assert.Equal("busy", await WebSocketClient.EchoAsync(socket, "busy"));
        var started = Environment.TickCount64;
        var (type, _) = await WebSocketClient.ReceiveAsync(socket, 5000);
        var waited = Environment.TickCount64 - started;
        Assert.Equal(WebSocketMessageType.Close, type);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, socket.CloseStatus); // 1001 going away
        Assert.InRange(waited, 900, 2500);
        await Eventually(() => echo.Open == 0);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, Assert.Single(echo.Closes));
        await Eventually(() => proxy.Log.Lines().Any(l => l.TryGetProperty("tunnel_closed_by", out var by) && by.GetString() == "tunnel_idle"));
    }

    [Fact]
    public async Task Tunnel_max_ends_even_a_busy_socket()
    {
        var (backend, _) = await EchoBackendAsync();
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend, "    timeouts: { tunnel_max: 1s }"));
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri);
        var started = Environment.TickCount64;
        var closed = false;
        while (Environment.TickCount64 - started < 5000)
        {
            await WebSocketClient.SendTextAsync(socket, "tick");
            var (type, _) = await WebSocketClient.ReceiveAsync(socket, 5000);
            if (type == WebSocketMessageType.Close)
            {
                closed = true;
                break;
            }
            await Task.Delay(100);
        }
        Assert.True(closed, "a busy socket outlived tunnel_max");
        Assert.InRange(Environment.TickCount64 - started, 900, 2500);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, socket.CloseStatus);
    }

    [Fact]
    public async Task An_h2c_upgrade_is_forwarded_as_a_plain_request()
    {
        var backend = await TestBackend.StartAsync("plain");
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend));
        var answer = await RawHttp.SendAsync(proxy.EndPoint,
            "GET /smuggle HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", idleMs: 2000);
        Assert.Equal(200, answer.Status);
        Assert.Contains("\r\nplain\r\n", answer.Text, StringComparison.Ordinal);
        var seen = backend.Last;
        Assert.False(seen.Headers.ContainsKey("Upgrade"));
        Assert.False(seen.Headers.ContainsKey("HTTP2-Settings"));
        Assert.Equal(0, proxy.Server.Runtime.Tunnels.Count);
    }

    [Fact]
    public async Task Any_other_upgrade_relays_raw_bytes_both_ways()
    {
        // A made-up protocol: after 101 the backend upper-cases what it reads, until "QUIT".
        var backend = await TestBackend.StartAsync("shout", async context =>
        {
            var upgrade = context.Features.Get<IHttpUpgradeFeature>()!;
            if (!upgrade.IsUpgradableRequest)
            {
                context.Response.StatusCode = 426;
                return;
            }
            context.Response.Headers.Upgrade = "shout/1";
            await using var stream = await upgrade.UpgradeAsync();
            var buffer = new byte[4096];
            int read;
            while ((read = await stream.ReadAsync(buffer)) > 0)
            {
                var text = Encoding.ASCII.GetString(buffer, 0, read);
                await stream.WriteAsync(Encoding.ASCII.GetBytes(text.ToUpperInvariant()));
                if (text.Contains("quit", StringComparison.Ordinal))
                {
                    return;
                }
            }
        });
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend));
        using var client = new TcpClient();
        await client.ConnectAsync(proxy.EndPoint);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /talk HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: shout/1\r\n\r\n"));
        var head = await ReadUntilAsync(stream, "\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 101", head);
        Assert.Contains("Upgrade: shout/1", head, StringComparison.OrdinalIgnoreCase);
        await stream.WriteAsync(Encoding.ASCII.GetBytes("hello \u0001 there"));
        Assert.Equal("HELLO \u0001 THERE", await ReadUntilAsync(stream, "THERE"));
        await stream.WriteAsync("quit"u8.ToArray());
        Assert.Equal("QUIT", await ReadUntilAsync(stream, "QUIT"));
        // The backend hung up: so does Fulcrum, within the half-close grace.
        var buffer = new byte[16];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal(0, await stream.ReadAsync(buffer, timeout.Token));
        Assert.Equal("shout/1", backend.Last.Headers["Upgrade"]);
    }

    [Fact]
    public async Task Another_protocols_tunnel_quiet_past_tunnel_idle_is_closed_with_a_tcp_close()
    {
        var backend = await TestBackend.StartAsync("quiet", async context =>
        {
            context.Response.Headers.Upgrade = "quiet/1";
            await using var stream = await context.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
            var buffer = new byte[64];
            while (await stream.ReadAsync(buffer) > 0)
            {
            }
        });
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend, "    timeouts: { tunnel_idle: 1s }"));
        using var client = new TcpClient();
        await client.ConnectAsync(proxy.EndPoint);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: quiet/1\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 101", await ReadUntilAsync(stream, "\r\n\r\n"));
        var started = Environment.TickCount64;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await stream.ReadAsync(new byte[16], timeout.Token));
        // Not before the idle time; the upper bound leaves room for a loaded suite (it failed
        // once at 2.5 s with every test running) while still telling tunnel_idle from no limit.
        Assert.InRange(Environment.TickCount64 - started, 900, 4500);
        await Eventually(() => proxy.Server.Runtime.Tunnels.Count == 0);
    }

    [Fact]
    public async Task An_extended_connect_for_another_protocol_is_refused_with_501()
    {
        var backend = await TestBackend.StartAsync("b");
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend), listenerProtocol: "h2c");
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        using var request = new HttpRequestMessage(HttpMethod.Connect, $"http://{proxy.BaseUri.Authority}/tunnel")
        {
            Version = System.Net.HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        request.Headers.Protocol = "connect-udp";
        request.Content = new StreamContent(new MemoryStream());
        using var response = await client.SendAsync(request);
        Assert.Equal(501, (int)response.StatusCode);
        Assert.Equal("unsupported_upgrade", response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Equal(0, backend.Count);
    }

    [Fact]
    public async Task A_backend_that_refuses_the_upgrade_is_relayed_as_a_response()
    {
        var backend = await TestBackend.StartAsync("no-ws", async context =>
        {
            context.Response.StatusCode = 403;
            await context.Response.WriteAsync("no sockets for you");
        });
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend));
        using var socket = new ClientWebSocket();
        var e = await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(new Uri($"ws://{proxy.BaseUri.Authority}/ws"), CancellationToken.None));
        Assert.Contains("403", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, proxy.Server.Runtime.Tunnels.Count);
    }

    /// <summary>A backend that answers every request head with <paramref name="answer"/> and then holds the connection.</summary>
    private static (TcpListener Listener, Task Loop) RawBackend(string answer)
    {
        var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var loop = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var client = await listener.AcceptTcpClientAsync();
                    _ = Task.Run(async () =>
                    {
                        using (client)
                        {
                            var stream = client.GetStream();
                            await ReadUntilAsync(stream, "\r\n\r\n");
                            await stream.WriteAsync(Encoding.ASCII.GetBytes(answer));
                            await Task.Delay(3000);
                        }
                    });
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        });
        return (listener, loop);
    }

    [Theory]
    [InlineData("GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", "h2c")]
    [InlineData("GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", "something-else")]
    public async Task A_backend_switching_to_a_protocol_the_client_did_not_offer_gets_502(string request, string switchedTo)
    {
        var (listener, loop) = RawBackend($"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {switchedTo}\r\n\r\nRAW BYTES");
        try
        {
            await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{((System.Net.IPEndPoint)listener.LocalEndpoint).Port}"]));
            var answer = await RawHttp.SendAsync(proxy.EndPoint, request, idleMs: 2000);
            Assert.Equal(502, answer.Status);
            Assert.Equal("upstream_protocol_error", answer.Header("Fulcrum-Error"));
            Assert.DoesNotContain("RAW BYTES", answer.Text, StringComparison.Ordinal);
            Assert.Equal(0, proxy.Server.Runtime.Tunnels.Count);
        }
        finally
        {
            listener.Stop();
            await loop;
        }
    }

    [Fact]
    public async Task A_plain_connect_is_refused_with_501()
    {
        var backend = await TestBackend.StartAsync("b");
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync(Pool(backend));
        var answer = await RawHttp.SendAsync(proxy.EndPoint, "CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n", idleMs: 2000);
        Assert.Equal(501, answer.Status);
        Assert.Equal("unsupported_upgrade", answer.Header("Fulcrum-Error"));
        Assert.Equal(0, backend.Count);
    }

    [Fact]
    public async Task An_http2_websocket_is_routed_as_a_get()
    {
        var (backend, _) = await EchoBackendAsync();
        await using var _b = backend;
        await using var proxy = await TestProxy.StartAsync($"""
            routes:
              - name: sockets
                match: {"{"} path_prefix: /ws, methods: [GET] {"}"}
                pool: main
            pools:
              - name: main
                backends: [{backend.Address}]
            """, listenerProtocol: "h2c");
        using var invoker = WebSocketClient.Http2Invoker();
        using var socket = await WebSocketClient.ConnectAsync(proxy.BaseUri, http2: invoker);
        Assert.Equal("routed", await WebSocketClient.EchoAsync(socket, "routed"));
        Assert.Equal("GET", backend.Last.Method);
        // An open tunnel is in flight on its backend, but not in the retry budget's base.
        Assert.Equal(1, proxy.Server.Runtime.Pool("main").Backends[0].InFlight);
        Assert.Equal(0, proxy.Server.Runtime.Pool("main").ActiveRequests);
    }

    private static async Task<string> ReadUntilAsync(NetworkStream stream, string marker)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var text = new StringBuilder();
        var buffer = new byte[4096];
        while (!text.ToString().Contains(marker, StringComparison.Ordinal))
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            if (read == 0)
            {
                break;
            }
            text.Append(Encoding.Latin1.GetString(buffer, 0, read));
        }
        return text.ToString();
    }

    internal static async Task Eventually(Func<bool> condition, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
            {
                Assert.Fail("the condition never held");
            }
            await Task.Delay(20);
        }
    }
}
