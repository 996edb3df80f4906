using System.Net.Sockets;
using System.Text;
using Fulcrum.Tests.Reload;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Integration;

/// <summary>
/// Fulcrum's own HTTP/1.1 front end over raw sockets: connection reuse and its end (HTTP/1.0 with
/// and without keep-alive, Connection: close), bodies that must not be sent (HEAD, 204, 304), a
/// client that stalls or leaves, the answers it writes itself, and the switch back to Kestrel.
/// </summary>
public sealed class FrontendTests : ConfigFolder
{
    private static string Yaml(TestBackend backend, string listenerExtra = "") => $$"""
        listeners:
          - name: web
            address: 127.0.0.1:0
        {{listenerExtra}}
        routes: [{ name: r, match: { path_prefix: /known }, pool: p }]
        pools: [{ name: p, backends: [{{backend.Address}}] }]
        """;

    /// <summary>A backend that answers with a Content-Length, or with the status a path asks for (/known/status/204).</summary>
    private static Task<TestBackend> LengthBackendAsync() => TestBackend.StartAsync("b", async c =>
    {
        var path = c.Request.Path.Value!;
        if (path.StartsWith("/known/status/", StringComparison.Ordinal))
        {
            c.Response.StatusCode = int.Parse(path["/known/status/".Length..], System.Globalization.CultureInfo.InvariantCulture);
            return;
        }
        var body = Encoding.ASCII.GetBytes("path=" + path);
        c.Response.ContentLength = body.Length;
        await c.Response.Body.WriteAsync(body);
    });

    private static int Count(string text, string what) => text.Split(what).Length - 1;

    [Fact]
    public async Task Http10_without_keep_alive_is_answered_and_closed_and_a_stream_ends_with_the_connection()
    {
        await using var backend = await TestBackend.StartAsync("streamer"); // answers without a length
        await using var proxy = await StartAsync(Yaml(backend));
        var response = await RawHttp.SendAsync(proxy.EndPoint, "GET /known HTTP/1.0\r\nHost: a\r\n\r\n");
        Assert.Equal(200, response.Status);
        Assert.True(response.Closed);
        Assert.Equal("close", response.Header("Connection"));
        Assert.Null(response.Header("Transfer-Encoding")); // HTTP/1.0 has no chunked: the close ends the body
        Assert.EndsWith("streamer", response.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http10_with_keep_alive_carries_a_second_request()
    {
        await using var backend = await LengthBackendAsync();
        await using var proxy = await StartAsync(Yaml(backend));
        var response = await RawHttp.SendAsync(proxy.EndPoint,
            "GET /known/1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /known/2 HTTP/1.0\r\nHost: a\r\n\r\n");
        Assert.Equal(2, Count(response.Text, "HTTP/1.1 200 OK"));
        Assert.Contains("Connection: keep-alive", response.Text, StringComparison.Ordinal);
        Assert.Contains("path=/known/1", response.Text, StringComparison.Ordinal);
        Assert.Contains("path=/known/2", response.Text, StringComparison.Ordinal);
        Assert.True(response.Closed); // the second did not ask to be kept
    }

    [Fact]
    public async Task Connection_close_closes_after_the_answer_and_nothing_after_it_is_read()
    {
        await using var backend = await LengthBackendAsync();
        await using var proxy = await StartAsync(Yaml(backend));
        var response = await RawHttp.SendAsync(proxy.EndPoint,
            "GET /known/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /known/2 HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(1, Count(response.Text, "HTTP/1.1 200 OK"));
        Assert.True(response.Closed);
        Assert.Equal(["/known/1"], backend.Seen.Select(s => s.PathAndQuery).ToArray());
    }

    [Fact]
    public async Task Head_204_and_304_carry_no_body_and_the_connection_goes_on()
    {
        await using var backend = await LengthBackendAsync();
        await using var proxy = await StartAsync(Yaml(backend));
        var response = await RawHttp.SendAsync(proxy.EndPoint,
            "HEAD /known/h HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /known/status/204 HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /known/status/304 HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /known/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var answers = response.Text.Split("HTTP/1.1 ", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, answers.Length);
        Assert.StartsWith("200", answers[0], StringComparison.Ordinal);
        Assert.Contains("Content-Length: 13", answers[0], StringComparison.Ordinal); // the length a GET would have
        Assert.EndsWith("\r\n\r\n", answers[0], StringComparison.Ordinal); // and no body
        Assert.StartsWith("204", answers[1], StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n", answers[1], StringComparison.Ordinal);
        Assert.DoesNotContain("Transfer-Encoding", answers[1], StringComparison.Ordinal);
        Assert.StartsWith("304", answers[2], StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n", answers[2], StringComparison.Ordinal);
        Assert.DoesNotContain("Transfer-Encoding", answers[2], StringComparison.Ordinal);
        Assert.StartsWith("200", answers[3], StringComparison.Ordinal);
        Assert.EndsWith("path=/known/last", answers[3], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_that_leaves_mid_body_aborts_the_request_the_backend_is_reading()
    {
        var aborted = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            try
            {
                await new StreamReader(c.Request.Body).ReadToEndAsync(c.RequestAborted);
                aborted.TrySetResult("the whole body arrived");
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or BadHttpRequestException)
            {
                aborted.TrySetResult("aborted");
            }
        });
        await using var proxy = await StartAsync(Yaml(backend));
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            await client.GetStream().WriteAsync("POST /known HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nfirst bytes"u8.ToArray());
            await Tunnels.WebSocketTests.Eventually(() => backend.Count > 0, 10_000);
        }
        var outcome = await aborted.Task.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal("aborted", outcome);
    }

    /// <summary>
    /// The front end keeps one record, upstream exchange and timer per connection and reuses
    /// them: nothing of one request may show in the next (ids, trace, a client's own id).
    /// </summary>
    [Fact]
    public async Task Requests_on_one_connection_each_get_their_own_id_and_trace()
    {
        await using var backend = await LengthBackendAsync();
        await using var proxy = await StartAsync(Yaml(backend));
        var response = await RawHttp.SendAsync(proxy.EndPoint,
            "GET /known/1 HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /known/2 HTTP/1.1\r\nHost: a\r\nX-Request-Id: client-chose-this\r\n\r\n" +
            "GET /known/3 HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /elsewhere HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /known/5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var ids = response.Text.Split("\r\n").Where(l => l.StartsWith("X-Request-Id: ", StringComparison.Ordinal)).Select(l => l["X-Request-Id: ".Length..]).ToArray();
        Assert.Equal(5, ids.Length);
        Assert.Equal("client-chose-this", ids[1]);
        Assert.Equal(5, ids.Distinct().Count());
        Assert.Contains("no_route", response.Text, StringComparison.Ordinal); // the fourth, in between
        var seen = backend.Seen.ToArray();
        Assert.Equal(["/known/1", "/known/2", "/known/3", "/known/5"], seen.Select(s => s.PathAndQuery).ToArray());
        Assert.Equal([ids[0], ids[1], ids[2], ids[4]], seen.Select(s => s.Headers["X-Request-Id"]).ToArray());
        var traces = seen.Select(s => s.Headers["traceparent"]).ToArray();
        Assert.All(traces, t => Assert.Matches("^00-[0-9a-f]{32}-[0-9a-f]{16}-00$", t));
        Assert.Equal(4, traces.Distinct().Count());
    }

    /// <summary>
    /// A chunked body whose framing breaks after it started going upstream: the client gets 400
    /// and a close, and the upstream connection it touched is never used again (two plain
    /// requests in a row show that connections are reused otherwise).
    /// </summary>
    [Fact]
    public async Task An_upstream_connection_is_not_reused_after_the_request_framing_broke()
    {
        var connections = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            connections.Enqueue(c.Connection.Id);
            try
            {
                await new StreamReader(c.Request.Body).ReadToEndAsync(c.RequestAborted);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or BadHttpRequestException)
            {
                // The proxy cut the body: this connection is done.
            }
        });
        await using var proxy = await StartAsync(Yaml(backend));
        await RawHttp.SendAsync(proxy.EndPoint, "GET /known/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        await RawHttp.SendAsync(proxy.EndPoint, "GET /known/2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.Single(connections.Distinct()); // kept alive and reused

        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            var stream = client.GetStream();
            await stream.WriteAsync("POST /known/broken HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"u8.ToArray());
            await Tunnels.WebSocketTests.Eventually(() => connections.Count == 3, 10_000);
            await stream.WriteAsync("zz\r\nmore\r\n0\r\n\r\n"u8.ToArray());
            var broken = await RawHttp.ReadAsync(client.Client, 3000);
            Assert.Equal(400, broken.Status);
            Assert.True(broken.Closed);
        }
        await RawHttp.SendAsync(proxy.EndPoint, "GET /known/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var ids = connections.ToArray();
        Assert.Equal(4, ids.Length);
        Assert.NotEqual(ids[2], ids[3]);
    }

    [Fact]
    public async Task Answers_Fulcrum_writes_itself_carry_their_code_and_a_date()
    {
        await using var backend = await LengthBackendAsync();
        await using var proxy = await StartAsync(Yaml(backend));
        var noRoute = await RawHttp.SendAsync(proxy.EndPoint, "GET /elsewhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.Equal(404, noRoute.Status);
        Assert.Equal("no_route", noRoute.Header("Fulcrum-Error"));
        Assert.NotNull(noRoute.Header("Date"));
        var refused = await RawHttp.SendAsync(proxy.EndPoint, "GET /known HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n");
        Assert.Equal(400, refused.Status);
        Assert.Equal("bad_request", refused.Header("Fulcrum-Error"));
        Assert.NotNull(refused.Header("Date"));
        Assert.True(refused.Closed);
        // A proxied answer keeps the backend's Date: one line, not two.
        var proxied = await RawHttp.SendAsync(proxy.EndPoint, "GET /known HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.Equal(1, Count(proxied.Text, "\r\nDate: "));
    }

    [Fact]
    public async Task A_stalled_head_gets_408_request_header_timeout()
    {
        await using var backend = await LengthBackendAsync();
        await using var proxy = await StartAsync(Yaml(backend, "    timeouts: { request_header: 1s }"));
        using var client = new TcpClient();
        await client.ConnectAsync(proxy.EndPoint);
        await client.GetStream().WriteAsync("GET /known HTTP/1.1\r\nHost: a\r\nX-Part"u8.ToArray());
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var response = await RawHttp.ReadAsync(client.Client, 15_000);
        Assert.Equal(408, response.Status);
        Assert.Equal("request_header_timeout", response.Header("Fulcrum-Error"));
        Assert.True(response.Closed);
        Assert.InRange(watch.ElapsedMilliseconds, 500, 10_000);
    }

    [Fact]
    public async Task Server_kestrel_goes_back_to_Kestrels_own_http1()
    {
        await using var backend = await LengthBackendAsync();
        var longLine = $"GET /known/{new string('a', 9000)} HTTP/1.1\r\nHost: a\r\n\r\n";
        await using (var fulcrum = await StartAsync(Yaml(backend)))
        {
            var response = await RawHttp.SendAsync(fulcrum.EndPoint, longLine);
            Assert.Equal(414, response.Status);
            Assert.Equal("request_line_too_long", response.Header("Fulcrum-Error"));
        }
        await using (var kestrel = await StartAsync(Yaml(backend, "    server: kestrel")))
        {
            var response = await RawHttp.SendAsync(kestrel.EndPoint, longLine);
            Assert.Equal(414, response.Status);
            Assert.Null(response.Header("Fulcrum-Error")); // Kestrel's own bare answer
            var ok = await RawHttp.SendAsync(kestrel.EndPoint, "GET /known/k HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            Assert.EndsWith("path=/known/k", ok.Text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Upgrades_expectations_and_paths_that_need_decoding_are_handed_to_Kestrel_on_the_same_connection()
    {
        await using var backend = await LengthBackendAsync();
        await using var proxy = await StartAsync(Yaml(backend));
        // One connection: served here, then a dotted and an encoded path (Kestrel normalises
        // them and from then on serves the connection), each answered in order.
        var response = await RawHttp.SendAsync(proxy.EndPoint,
            "GET /known/plain HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /elsewhere/../known/dotted HTTP/1.1\r\nHost: a\r\n\r\n" +
            "GET /known/%61 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.Equal(3, Count(response.Text, "HTTP/1.1 200 OK"));
        Assert.Equal(["/known/plain", "/known/dotted", "/known/a"], backend.Seen.Select(s => s.PathAndQuery).ToArray());
    }
}
