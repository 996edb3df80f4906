using System.Net.Sockets;
using System.Text;
using Fulcrum.Tests.Reload;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Integration;

/// <summary>A listener's own limits and timeouts on the client side, over raw sockets.</summary>
public sealed class ListenerLimitTests : ConfigFolder
{
    private static string Yaml(TestBackend backend, string listenerExtra) => $$"""
        listeners:
          - name: web
            address: 127.0.0.1:0
        {{listenerExtra}}
        routes: [{ name: r, pool: p }]
        pools: [{ name: p, backends: [{{backend.Address}}] }]
        """;

    /// <summary>Sends <paramref name="request"/> and reads until the server closes or <paramref name="timeoutMs"/> passes.</summary>
    private static async Task<(string Text, bool Closed, long Ms)> ExchangeAsync(TcpClient client, string request, int timeoutMs = 10_000)
    {
        var stream = client.GetStream();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        if (request.Length > 0)
        {
            await stream.WriteAsync(Encoding.Latin1.GetBytes(request));
        }
        var text = new StringBuilder();
        var buffer = new byte[64 * 1024];
        using var timeout = new CancellationTokenSource(timeoutMs);
        try
        {
            while (true)
            {
                var n = await stream.ReadAsync(buffer, timeout.Token);
                if (n == 0)
                {
                    return (text.ToString(), true, watch.ElapsedMilliseconds);
                }
                text.Append(Encoding.Latin1.GetString(buffer, 0, n));
            }
        }
        catch (OperationCanceledException)
        {
            return (text.ToString(), false, watch.ElapsedMilliseconds);
        }
        catch (IOException)
        {
            return (text.ToString(), true, watch.ElapsedMilliseconds);
        }
    }

    [Fact]
    public async Task Limits_on_the_request_line_and_headers_give_414_and_431()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        await using var proxy = await StartAsync(Yaml(backend, "    limits: { request_line: 1KiB, headers: 4KiB, header_count: 10 }"));

        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            var (text, closed, _) = await ExchangeAsync(client, $"GET /{new string('a', 2000)} HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 414", text, StringComparison.Ordinal);
            Assert.True(closed);
        }
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            var (text, _, _) = await ExchangeAsync(client, $"GET / HTTP/1.1\r\nHost: a\r\nX-Big: {new string('b', 5000)}\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 431", text, StringComparison.Ordinal);
        }
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            var many = string.Concat(Enumerable.Range(0, 11).Select(i => $"X-{i}: {i}\r\n"));
            var (text, _, _) = await ExchangeAsync(client, $"GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
            Assert.StartsWith("HTTP/1.1 431", text, StringComparison.Ordinal);
        }
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            var (text, _, _) = await ExchangeAsync(client, $"GET /{new string('a', 500)} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 200", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_head_that_stalls_is_cut_at_request_header_and_an_idle_connection_at_keep_alive()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        await using var proxy = await StartAsync(Yaml(backend, "    timeouts: { request_header: 1s, keep_alive: 1s }"));

        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            // Kestrel checks its timeouts once a second, and the suite runs in parallel on two cores:
            // the bound is loose, but far under Kestrel's own defaults (30 s and 130 s).
            var (text, closed, ms) = await ExchangeAsync(client, "GET / HTTP/1.1\r\nHost: a\r\nX-Part", timeoutMs: 15_000);
            Assert.True(closed, $"not closed after {ms} ms");
            Assert.True(ms < 12_000, $"closed after {ms} ms");
            Assert.True(text.Length == 0 || text.StartsWith("HTTP/1.1 408", StringComparison.Ordinal), text);
        }
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(proxy.EndPoint);
            var stream = client.GetStream();
            await stream.WriteAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray());
            var (text, closed, ms) = await ExchangeAsync(client, "", timeoutMs: 15_000);
            Assert.Contains("b1", text, StringComparison.Ordinal);
            Assert.True(closed && ms < 12_000, $"the idle connection was {(closed ? "closed" : "still open")} after {ms} ms");
        }
    }

    [Fact]
    public async Task The_last_request_a_connection_may_carry_is_answered_with_connection_close()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        await using var proxy = await StartAsync(Yaml(backend, "    limits: { max_requests_per_connection: 3 }"));
        using var client = new TcpClient();
        await client.ConnectAsync(proxy.EndPoint);
        var pipelined = string.Concat(Enumerable.Repeat("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 4));
        var (text, closed, _) = await ExchangeAsync(client, pipelined);
        Assert.True(closed);
        var answers = text.Split("HTTP/1.1 200").Length - 1;
        Assert.Equal(3, answers);
        Assert.Contains("Connection: close", text, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task A_reload_that_changes_a_kept_listeners_head_limits_says_they_wait_for_the_next_start()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        await using var proxy = await StartAsync(Yaml(backend, "    limits: { request_line: 1KiB }"));
        await System.IO.File.WriteAllTextAsync(File, Yaml(backend, "    limits: { request_line: 2KiB, max_requests_per_connection: 5 }"));
        var result = await proxy.Server.ReloadAsync("test");
        Assert.True(result.Success);
        Assert.Contains("listeners[web].limits/timeouts", result.Changes!.NeedRestart);
        // As the reload says: the head limit is still the one the listener started with.
        var stillLimited = await RawHttp.SendAsync(proxy.EndPoint, $"GET /{new string('a', 1500)} HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(414, stillLimited.Status);

        await System.IO.File.WriteAllTextAsync(File, Yaml(backend, "    limits: { request_line: 2KiB, max_requests_per_connection: 9 }"));
        result = await proxy.Server.ReloadAsync("test");
        Assert.Contains("listeners[web].limits/timeouts", result.Changes!.NeedRestart); // still 1KiB until a restart

        await System.IO.File.WriteAllTextAsync(File, Yaml(backend, "    limits: { request_line: 1KiB, max_requests_per_connection: 9 }"));
        result = await proxy.Server.ReloadAsync("test");
        Assert.DoesNotContain("listeners[web].limits/timeouts", result.Changes!.NeedRestart); // back to what it runs with
    }
}
