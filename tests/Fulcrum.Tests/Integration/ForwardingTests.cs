using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Integration;

/// <summary>Requests and responses cross Fulcrum as the client and backend meant them.</summary>
public class ForwardingTests
{
    [Theory]
    [InlineData("GET")]
    [InlineData("POST")]
    [InlineData("PUT")]
    [InlineData("DELETE")]
    [InlineData("PATCH")]
    [InlineData("OPTIONS")]
    [InlineData("PROPFIND")]
    public async Task AnyMethod_IsForwardedWithPathAndQuery(string method)
    {
        await using var backend = await TestBackend.StartAsync("b", async c => await c.Response.WriteAsync($"{c.Request.Method} {c.Request.Path}{c.Request.QueryString}"));
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var request = new HttpRequestMessage(new HttpMethod(method), "/a/b%20c/d?x=1&y=%2F");
        using var response = await proxy.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal($"{method} /a/b%20c/d?x=1&y=%2F", await response.Content.ReadAsStringAsync());
        Assert.Equal("/a/b%20c/d?x=1&y=%2F", backend.Last.PathAndQuery);
    }

    [Fact]
    public async Task DotSegments_AreResolvedBeforeRouting_AndTheBackendSeesTheRoutedPath()
    {
        await using var pub = await TestBackend.StartAsync("public");
        await using var admin = await TestBackend.StartAsync("admin");
        await using var proxy = await TestProxy.StartAsync($$"""
            routes:
              - { name: admin, pool: admin, match: { path_prefix: /admin/ } }
              - { name: public, pool: public, match: { path_prefix: /public/ } }
            pools:
              - { name: admin, backends: [{{admin.Address}}] }
              - { name: public, backends: [{{pub.Address}}] }
            """);
        var raw = await RawHttp.SendAsync(proxy.EndPoint, "GET /public/../admin/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        Assert.Equal(200, raw.Status);
        Assert.Contains("admin", raw.Text, StringComparison.Ordinal);
        Assert.Equal("/admin/secret", admin.Last.PathAndQuery);
        Assert.Equal(0, pub.Count);
    }

    [Theory]
    [InlineData("X-Secret")]
    [InlineData("X-Secret, X-Other")]
    public async Task HopByHopHeaders_AndHeadersNamedInConnection_AreRemoved(string connection)
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            c.Response.Headers["X-Internal"] = "backend-only";
            c.Response.Headers["Keep-Alive"] = "timeout=5";
            c.Response.Headers.Connection = "X-Internal";
            c.Response.Headers["X-Kept"] = "yes";
            await c.Response.WriteAsync("ok");
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/");
        // Kestrel rewrites a Connection header that also holds keep-alive, close or upgrade to
        // that one word, losing the other tokens before Fulcrum sees them (docs/forwarding.md).
        request.Headers.TryAddWithoutValidation("Connection", connection);
        request.Headers.TryAddWithoutValidation("X-Secret", "client-only");
        request.Headers.TryAddWithoutValidation("Keep-Alive", "timeout=5");
        request.Headers.TryAddWithoutValidation("Proxy-Authorization", "Basic abc");
        request.Headers.TryAddWithoutValidation("X-Custom", "kept");
        using var response = await proxy.Client.SendAsync(request);

        var seen = backend.Last.Headers;
        Assert.False(seen.ContainsKey("X-Secret"), "X-Secret reached the backend");
        Assert.False(seen.ContainsKey("Keep-Alive"), "Keep-Alive reached the backend");
        Assert.False(seen.ContainsKey("Proxy-Authorization"), "Proxy-Authorization reached the backend");
        Assert.Equal("kept", seen["X-Custom"]);
        Assert.False(response.Headers.Contains("X-Internal"), "X-Internal reached the client");
        Assert.False(response.Headers.Contains("Keep-Alive"), "Keep-Alive reached the client: " + response.Headers);
        Assert.Equal("yes", response.Headers.GetValues("X-Kept").Single());
    }

    [Fact]
    public async Task ForwardedHeaders_AreAppendedAndSet()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/");
        request.Headers.Host = "shop.example.com";
        request.Headers.TryAddWithoutValidation("X-Forwarded-For", "203.0.113.7");
        request.Headers.TryAddWithoutValidation("X-Forwarded-Proto", "gopher");
        using var response = await proxy.Client.SendAsync(request);

        var seen = backend.Last.Headers;
        Assert.Equal("203.0.113.7, 127.0.0.1", seen["X-Forwarded-For"]);
        Assert.Equal("http", seen["X-Forwarded-Proto"]);
        Assert.Equal("shop.example.com", seen["X-Forwarded-Host"]);
        Assert.Equal("shop.example.com", seen["Host"]);
    }

    [Fact]
    public async Task HostHeader_BackendMode_SendsTheBackendsAddress()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], poolExtra: "    host_header: backend"));
        using var request = new HttpRequestMessage(HttpMethod.Get, "/");
        request.Headers.Host = "shop.example.com";
        using var response = await proxy.Client.SendAsync(request);
        Assert.Equal(backend.Address, backend.Last.Headers["Host"]);
        Assert.Equal("shop.example.com", backend.Last.Headers["X-Forwarded-Host"]);
    }

    [Fact]
    public async Task RequestId_IsKeptWhenGiven_GeneratedWhenAbsent_AndPassedUpstream()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);

        using var given = new HttpRequestMessage(HttpMethod.Get, "/");
        given.Headers.TryAddWithoutValidation("X-Request-Id", "trace-me-42");
        using (var response = await proxy.Client.SendAsync(given))
        {
            Assert.Equal("trace-me-42", backend.Last.Headers["X-Request-Id"]);
            Assert.Equal("trace-me-42", response.Headers.GetValues("X-Request-Id").Single());
        }

        using (var response = await proxy.Client.GetAsync("/"))
        {
            var id = backend.Last.Headers["X-Request-Id"];
            Assert.Matches("^[0-9a-f]{16}$", id);
            Assert.Equal(id, response.Headers.GetValues("X-Request-Id").Single());
            var line = await proxy.Log.WaitForAsync(l => l.GetProperty("request_id").GetString() == id);
            Assert.Equal(200, line.GetProperty("status").GetInt32());
        }
    }

    [Fact]
    public async Task Head_GetsHeadersAndNoBody()
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            c.Response.ContentLength = 5;
            if (!HttpMethods.IsHead(c.Request.Method))
            {
                await c.Response.WriteAsync("hello");
            }
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var raw = await RawHttp.SendAsync(proxy.EndPoint, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        // Two responses on one connection: the HEAD's Content-Length did not swallow the GET's body.
        var parts = raw.Text.Split("HTTP/1.1 200 OK");
        Assert.Equal(3, parts.Length);
        Assert.Contains("Content-Length: 5", parts[1], StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n", parts[1], StringComparison.Ordinal);
        Assert.Contains("hello", parts[2], StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChunkedRequestBody_IsForwardedWhole()
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            var body = await new StreamReader(c.Request.Body).ReadToEndAsync();
            await c.Response.WriteAsync($"{c.Request.ContentLength?.ToString() ?? "chunked"}:{body}");
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var raw = await RawHttp.SendAsync(proxy.EndPoint,
            "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        Assert.Equal(200, raw.Status);
        Assert.Contains("chunked:hello world", raw.Text, StringComparison.Ordinal);
        Assert.Equal("chunked", backend.Last.Headers["Transfer-Encoding"]);
    }

    [Fact]
    public async Task ContentLengthZero_IsForwarded()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var response = await proxy.Client.PostAsync("/", new ByteArrayContent([]));
        Assert.Equal("0", backend.Last.Headers["Content-Length"]);
    }

    [Fact]
    public async Task ExpectContinue_ClientGets100ThenTheResponse()
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            var body = await new StreamReader(c.Request.Body).ReadToEndAsync();
            await c.Response.WriteAsync("got " + body);
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint);
        await socket.SendAsync(Encoding.ASCII.GetBytes("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"));
        // The client waits for 100 Continue before sending its body.
        var interim = await RawHttp.ReadAsync(socket, 3000);
        Assert.StartsWith("HTTP/1.1 100 Continue", interim.Text, StringComparison.Ordinal);
        await socket.SendAsync(Encoding.ASCII.GetBytes("hello"));
        var final = await RawHttp.ReadAsync(socket, 3000);
        Assert.StartsWith("HTTP/1.1 200 OK", final.Text, StringComparison.Ordinal);
        Assert.Contains("got hello", final.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExpectContinue_BackendRefusesEarly_BodyIsNeverRead()
    {
        var bodyRead = false;
        await using var backend = await TestBackend.StartAsync("b", c =>
        {
            c.Response.StatusCode = 413;
            return Task.CompletedTask;
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint);
        await socket.SendAsync(Encoding.ASCII.GetBytes("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"));
        var response = await RawHttp.ReadAsync(socket, 3000);
        Assert.StartsWith("HTTP/1.1 413", response.Text, StringComparison.Ordinal);
        Assert.DoesNotContain("100 Continue", response.Text, StringComparison.Ordinal);
        Assert.False(bodyRead);
    }

    [Fact]
    public async Task ResponseTrailers_ReachAnHttp2Client()
    {
        // Kestrel cannot write HTTP/1.1 trailers, so the backend is a raw socket that does.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var serve = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            var stream = client.GetStream();
            var buffer = new byte[8192];
            var head = "";
            while (!head.Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await stream.ReadAsync(buffer);
                head += Encoding.ASCII.GetString(buffer, 0, n);
            }
            await stream.WriteAsync(Encoding.ASCII.GetBytes(
                "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"));
            await Task.Delay(500);
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [$"127.0.0.1:{port}"]), listenerProtocol: "h2c");
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        using var request = new HttpRequestMessage(HttpMethod.Post, proxy.BaseUri) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact, Content = new StringContent("x") };
        request.Headers.TE.Add(new TransferCodingWithQualityHeaderValue("trailers"));
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal("hello", await response.Content.ReadAsStringAsync());
        Assert.Equal("0", response.TrailingHeaders.GetValues("grpc-status").Single());
        Assert.Equal("fine", response.TrailingHeaders.GetValues("grpc-message").Single());
        await serve;
    }

    [Fact]
    public async Task ClientAbort_CancelsTheUpstreamRequest()
    {
        var upstreamCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var upstreamStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            c.RequestAborted.Register(() => upstreamCancelled.TrySetResult());
            upstreamStarted.TrySetResult();
            await Task.Delay(Timeout.Infinite, c.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var cancel = new CancellationTokenSource();
        var call = proxy.Client.GetAsync("/slow", cancel.Token);
        await upstreamStarted.Task.WaitAsync(TimeSpan.FromSeconds(5));
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        await upstreamCancelled.Task.WaitAsync(TimeSpan.FromSeconds(5));
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/slow");
        Assert.Equal("client_aborted", line.GetProperty("error").GetString());
        Assert.Equal(499, line.GetProperty("status").GetInt32());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task UpstreamAbortMidBody_AbortsTheClientResponse(bool contentLength)
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            if (contentLength)
            {
                c.Response.ContentLength = 100_000;
            }
            await c.Response.Body.WriteAsync(new byte[1000]);
            await c.Response.Body.FlushAsync();
            await Task.Delay(100);
            c.Abort();
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var response = await proxy.Client.GetAsync("/cut", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // The body must fail, not end early as if it were complete.
        await Assert.ThrowsAnyAsync<Exception>(async () => await response.Content.ReadAsByteArrayAsync());
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/cut");
        Assert.Equal("upstream_reset", line.GetProperty("error").GetString());
    }
}
