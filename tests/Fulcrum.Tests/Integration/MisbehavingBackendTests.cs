using System.Net;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Integration;

/// <summary>
/// Backends that misbehave in every way a proxy meets: each gets a named error code and a sentence
/// (in the response when nothing was sent yet, in the access log when the response was cut), and
/// Fulcrum keeps serving everyone else.
/// </summary>
public sealed class MisbehavingBackendTests
{
    /// <summary>A proxy with <c>/bad/</c> routed to the misbehaving backend and everything else to a good one.</summary>
    private static Task<TestProxy> StartAsync(ScriptedBackend bad, TestBackend good, string badPool = "", string badRoute = "") => TestProxy.StartAsync($$"""
        routes:
          - name: bad
            pool: bad
            match: { path_prefix: /bad/ }
        {{badRoute}}
          - { name: good, pool: good }
        pools:
          - name: bad
            health: { passive: { consecutive_failures: 1000, consecutive_5xx: 1000 } }
        {{badPool}}
            backends: [{{bad.Address}}]
          - name: good
            backends: [{{good.Address}}]
        """);

    /// <summary>Everyone else is still served, on a connection of their own.</summary>
    private static async Task GoodStillServedAsync(TestProxy proxy)
    {
        using var client = new HttpClient { BaseAddress = proxy.BaseUri };
        Assert.Equal("good", await client.GetStringAsync("/fine"));
    }

    public static TheoryData<string, string, string> RefusedBeforeAnyByte => new()
    {
        { "not-http", "upstream_protocol_error", "status line" },
        { "huge-head", "upstream_protocol_error", "larger than 4 KiB" },
        { "1xx-flood", "upstream_protocol_error", "interim (1xx) responses" },
        { "never-answers", "response_timeout", "did not answer in time" },
        { "closes-at-once", "upstream_reset", "broke the exchange" },
    };

    [Theory]
    [MemberData(nameof(RefusedBeforeAnyByte))]
    public async Task A_backend_that_breaks_before_its_answer_gets_a_code_and_a_sentence(string kind, string code, string sentence)
    {
        await using var bad = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            await conn.ReadHeadAsync();
            switch (kind)
            {
                case "not-http":
                    await conn.WriteAsync("SSH-2.0-OpenSSH_9.6\r\n\r\n");
                    break;
                case "huge-head":
                    await conn.WriteAsync("HTTP/1.1 200 OK\r\nX-Big: " + new string('a', 5000) + "\r\nContent-Length: 0\r\n\r\n");
                    break;
                case "1xx-flood":
                    for (var i = 0; i < 4000; i++)
                    {
                        await conn.WriteAsync("HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    break;
                case "never-answers":
                    await Task.Delay(3000);
                    break;
                case "closes-at-once":
                    break;
            }
        });
        await using var good = await TestBackend.StartAsync("good");
        await using var proxy = await StartAsync(bad, good, badPool: "    limits: { upstream_response_headers: 4KiB }", badRoute: "    timeouts: { response: 300ms }");
        using var response = await proxy.Client.GetAsync("/bad/x");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.Headers.Contains("Fulcrum-Error"), $"{(int)response.StatusCode}: {body}");
        Assert.Equal(code, response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Equal(code == "response_timeout" ? HttpStatusCode.GatewayTimeout : HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Contains(sentence, body, StringComparison.Ordinal);
        await GoodStillServedAsync(proxy);
    }

    public static TheoryData<string, string> CutAfterTheHead => new()
    {
        { "reset-after-head", "upstream_reset" },
        { "short-body", "upstream_reset" },
        { "bad-chunk", "upstream_protocol_error" },
        { "stall-mid-body", "idle_timeout" },
    };

    [Theory]
    [MemberData(nameof(CutAfterTheHead))]
    public async Task A_backend_that_breaks_after_its_head_has_the_client_cut_and_the_log_names_why(string kind, string code)
    {
        await using var bad = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            await conn.ReadHeadAsync();
            switch (kind)
            {
                case "reset-after-head":
                    await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome");
                    await Task.Delay(100);
                    conn.Reset();
                    break;
                case "short-body":
                    await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part");
                    break;
                case "bad-chunk":
                    await conn.WriteAsync("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nnot a chunk\r\n");
                    await Task.Delay(1000);
                    break;
                case "stall-mid-body":
                    await conn.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part");
                    await Task.Delay(3000);
                    break;
            }
        });
        await using var good = await TestBackend.StartAsync("good");
        await using var proxy = await StartAsync(bad, good, badRoute: "    timeouts: { idle: 300ms }");
        // The head went out first; the cut may reach the client before or after it reads it.
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            using var response = await proxy.Client.GetAsync("/bad/x", HttpCompletionOption.ResponseHeadersRead);
            await response.Content.ReadAsStringAsync();
        });
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/bad/x");
        Assert.Equal(code, line.GetProperty("error").GetString());
        Assert.Equal(200, line.GetProperty("status").GetInt32());
        await GoodStillServedAsync(proxy);
    }

    [Fact]
    public async Task A_backend_that_claims_keep_alive_but_closes_after_every_answer_costs_clients_nothing()
    {
        await using var bad = await ScriptedBackend.StartAsync(async (conn, _) =>
        {
            await conn.ReadHeadAsync();
            await conn.WriteAsync("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nContent-Length: 2\r\n\r\nok");
            // ...and closes at once, every time.
        });
        await using var good = await TestBackend.StartAsync("good");
        await using var proxy = await StartAsync(bad, good);
        for (var i = 0; i < 40; i++)
        {
            using var response = await proxy.Client.GetAsync($"/bad/{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("ok", await response.Content.ReadAsStringAsync());
        }
        Assert.True(bad.Connections >= 40, $"{bad.Connections} connections for 40 requests");
        await GoodStillServedAsync(proxy);
    }
}
