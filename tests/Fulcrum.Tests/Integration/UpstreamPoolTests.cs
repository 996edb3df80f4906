using System.Net;
using System.Net.Sockets;
using System.Text;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Integration;

/// <summary>
/// Fulcrum's own HTTP/1.1 upstream pool against scripted backends: keep-alive and its races, the
/// framings, the early answer to an upload, the connection limit, and what a broken backend gets.
/// </summary>
public class UpstreamPoolTests
{
    [Fact]
    public async Task Sequential_requests_share_one_kept_alive_connection()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            while (await conn.ReadHeadAsync() is not null)
            {
                await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("ok", await proxy.Client.GetStringAsync($"/{i}"));
        }
        Assert.Equal(1, backend.Connections);
        Assert.Equal(5, backend.Heads.Count);
    }

    [Fact]
    public async Task A_connection_the_backend_closed_while_idle_is_noticed_and_not_used()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            await conn.ReadHeadAsync();
            // Connection: keep-alive in words, then a close: a backend's keep-alive timeout.
            await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        Assert.Equal("ok", await proxy.Client.GetStringAsync("/a"));
        await Task.Delay(200); // the backend's close reaches the idle connection
        Assert.Equal("ok", await proxy.Client.GetStringAsync("/b"));
        Assert.Equal(2, backend.Connections);
    }

    [Fact]
    public async Task A_kept_alive_connection_closed_as_the_request_arrived_is_retried_once_on_a_new_one()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, index) =>
        {
            await conn.ReadHeadAsync();
            await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
            if (index == 0)
            {
                // The next request on this connection arrives as the backend gives up on it.
                await conn.ReadHeadAsync();
                return;
            }
            while (await conn.ReadHeadAsync() is not null)
            {
                await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater");
            }
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        Assert.Equal("first", await proxy.Client.GetStringAsync("/a"));
        // The retry lands on the second connection, whose first answer is "first" too.
        Assert.Equal("first", await proxy.Client.GetStringAsync("/b"));
        Assert.Equal(2, backend.Connections);
        Assert.Equal(["/a", "/b", "/b"], backend.Heads.Select(h => h.Split(' ')[1]));
    }

    [Fact]
    public async Task A_new_connection_closed_without_an_answer_is_upstream_reset_not_retried()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, _) => await conn.ReadHeadAsync());
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_reset", response.Headers.GetValues("Fulcrum-Error").Single());
        // The route's own retry may try again (each try on its own connection), the pool does not.
        Assert.Equal(backend.Connections, backend.Heads.Count);
    }

    [Fact]
    public async Task A_body_framed_by_the_end_of_the_connection_is_relayed_whole_and_the_connection_not_kept()
    {
        var body = new string('x', 100_000);
        await using var backend = await ScriptedBackend.AnsweringOnceAsync("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body);
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        Assert.Equal(body, await proxy.Client.GetStringAsync("/one"));
        Assert.Equal(body, await proxy.Client.GetStringAsync("/two"));
        Assert.Equal(2, backend.Connections);
    }

    [Fact]
    public async Task A_chunked_body_with_extensions_and_odd_chunk_sizes_is_relayed_whole_and_the_connection_kept()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            while (await conn.ReadHeadAsync() is not null)
            {
                await conn.WriteAsync("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n");
                await Task.Delay(20); // the end arrives in a later read
                await conn.WriteAsync("0\r\nX-Trailer: t\r\n\r\n");
            }
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("hello 0123456789", await proxy.Client.GetStringAsync("/"));
        }
        Assert.Equal(1, backend.Connections);
    }

    [Fact]
    public async Task A_HEAD_answer_with_a_length_and_no_body_leaves_the_connection_usable()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            while (await conn.ReadHeadAsync() is { } head)
            {
                await conn.WriteAsync(head.StartsWith("HEAD", StringComparison.Ordinal)
                    ? "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
                    : "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget");
            }
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using (var head = await proxy.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/")))
        {
            Assert.Equal(HttpStatusCode.OK, head.StatusCode);
            Assert.Equal(1234, head.Content.Headers.ContentLength);
        }
        Assert.Equal("get", await proxy.Client.GetStringAsync("/"));
        Assert.Equal(1, backend.Connections);
    }

    [Fact]
    public async Task Interim_answers_are_passed_over_for_the_final_one()
    {
        await using var backend = await ScriptedBackend.AnsweringOnceAsync("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal("done", await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nX-Smuggle : 1\r\nContent-Length: 2\r\n\r\nok", "not a token")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "disagree")]
    [InlineData("SSH-2.0-OpenSSH_9.6\r\n\r\n", "status line")]
    public async Task A_broken_answer_is_a_502_upstream_protocol_error_that_says_what_broke(string answer, string said)
    {
        await using var backend = await ScriptedBackend.AnsweringOnceAsync(answer);
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_protocol_error", response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Contains(said, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_response_head_over_64_KiB_is_refused()
    {
        await using var backend = await ScriptedBackend.AnsweringOnceAsync("HTTP/1.1 200 OK\r\nX-Big: " + new string('a', 70_000) + "\r\nContent-Length: 0\r\n\r\n");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var response = await proxy.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_protocol_error", response.Headers.GetValues("Fulcrum-Error").Single());
    }

    [Fact]
    public async Task A_body_cut_short_of_its_length_aborts_the_client_connection()
    {
        await using var backend = await ScriptedBackend.AnsweringOnceAsync("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => proxy.Client.GetStringAsync("/"));
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/");
        Assert.Equal("upstream_reset", line.GetProperty("error").GetString());
    }

    [Fact]
    public async Task An_answer_before_the_whole_upload_is_what_the_client_gets()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            await conn.ReadHeadAsync();
            // Refuses the upload without reading it, and closes its side (reading on, as real
            // servers do, so the answer is not lost to a reset).
            await conn.WriteAsync("HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!");
            await conn.CloseAndDrainAsync();
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var content = new ByteArrayContent(new byte[8 * 1024 * 1024]);
        using var response = await proxy.Client.PostAsync("/upload", content);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("too big!", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_try_that_fails_while_the_client_is_still_sending_lets_the_retry_replay_the_body()
    {
        await using var backend = await ScriptedBackend.StartAsync(async (conn, index) =>
        {
            await conn.ReadHeadAsync();
            if (index == 0)
            {
                return; // reset before any answer, with the body only half sent
            }
            var body = await conn.ReadBytesAsync(5);
            await conn.WriteAsync($"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{body}");
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint);
        // A PUT (idempotent, so a reset is retried) whose body comes in two parts.
        await socket.SendAsync(Encoding.ASCII.GetBytes("PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe"));
        await Task.Delay(300);
        await socket.SendAsync(Encoding.ASCII.GetBytes("llo"));
        var response = await RawHttp.ReadAsync(socket, 3000);
        Assert.StartsWith("HTTP/1.1 200", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("hello", response.Text, StringComparison.Ordinal);
        Assert.Equal(2, backend.Connections);
    }

    [Fact]
    public async Task A_chunked_upload_reaches_the_backend_whole()
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            var body = await new StreamReader(c.Request.Body).ReadToEndAsync();
            await c.Response.WriteAsync($"{c.Request.Headers.TransferEncoding}:{body.Length}:{body[..5]}");
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var content = new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes("hello" + new string('.', 200_000))));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await proxy.Client.SendAsync(request);
        Assert.Equal("chunked:200005:hello", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task With_max_connections_requests_beyond_wait_for_a_connection_and_all_are_served()
    {
        var open = 0;
        var most = 0;
        await using var backend = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            var now = Interlocked.Increment(ref open);
            InterlockedMax(ref most, now);
            try
            {
                while (await conn.ReadHeadAsync() is not null)
                {
                    await Task.Delay(50);
                    await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            }
            finally
            {
                Interlocked.Decrement(ref open);
            }
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address], poolExtra: "    limits: { max_connections: 1 }"));
        var bodies = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => proxy.Client.GetStringAsync($"/{i}")));
        Assert.All(bodies, b => Assert.Equal("ok", b));
        Assert.Equal(1, backend.Connections);
        Assert.Equal(1, Volatile.Read(ref most));
    }

    [Fact]
    public async Task The_upstream_head_carries_the_proxy_headers_and_not_the_hop_by_hop_ones()
    {
        await using var backend = await ScriptedBackend.AnsweringOnceAsync("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]));
        var raw = await RawHttp.SendAsync(proxy.EndPoint,
            "GET /p?q=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nCookie: a=1\r\nX-Forwarded-For: 203.0.113.9\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n");
        Assert.Equal(200, raw.Status);
        var lines = backend.Heads.Single().Split("\r\n");
        Assert.Equal("GET /p?q=1 HTTP/1.1", lines[0]);
        Assert.Contains("Host: shop.example", lines);
        Assert.Contains("TE: trailers", lines);
        Assert.Contains("Cookie: a=1", lines);
        Assert.Contains("X-Multi: 1, 2", lines);
        Assert.Contains("X-Forwarded-For: 203.0.113.9, 127.0.0.1", lines);
        Assert.Contains("X-Forwarded-Proto: http", lines);
        Assert.Contains("X-Forwarded-Host: shop.example", lines);
        Assert.Contains(lines, l => l.StartsWith("X-Request-Id: ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("traceparent: 00-", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("Connection", StringComparison.OrdinalIgnoreCase)
            || l.StartsWith("Keep-Alive", StringComparison.OrdinalIgnoreCase) || l.StartsWith("X-Secret", StringComparison.OrdinalIgnoreCase)
            || l.StartsWith("Content-Length", StringComparison.OrdinalIgnoreCase) || l.StartsWith("Transfer-Encoding", StringComparison.OrdinalIgnoreCase));
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}
