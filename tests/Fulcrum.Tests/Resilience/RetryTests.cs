using System.Diagnostics;
using System.Net;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Resilience;

/// <summary>Safe retries: one dying or hanging backend costs clients nothing; unsafe requests are never replayed.</summary>
[Collection(nameof(Integration.SerialTests))]
public class RetryTests
{
    private static async Task<(int Served, List<string> Failures, List<double> LatenciesMs)> LoopAsync(TestProxy proxy, TimeSpan duration, int parallel, Func<Task>? during = null)
    {
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var latencies = new System.Collections.Concurrent.ConcurrentQueue<double>();
        var served = 0;
        using var stop = new CancellationTokenSource(duration);
        var workers = Enumerable.Range(0, parallel).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var watch = Stopwatch.StartNew();
                try
                {
                    using var response = await proxy.Client.GetAsync("/", CancellationToken.None);
                    var body = await response.Content.ReadAsStringAsync();
                    if (response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref served);
                        latencies.Enqueue(watch.Elapsed.TotalMilliseconds);
                    }
                    else
                    {
                        failures.Enqueue($"{(int)response.StatusCode}: {body.Replace('\n', ' ')}");
                    }
                }
                catch (HttpRequestException e)
                {
                    failures.Enqueue(e.Message);
                }
            }
        })).ToList();
        if (during is not null)
        {
            await during();
        }
        await Task.WhenAll(workers);
        return (served, [.. failures], [.. latencies]);
    }

    [Fact]
    public async Task Crash_OneOfThreeKilledAndRestarted_ZeroClientErrors_AndItGetsTrafficAgain()
    {
        var victim = await TestBackend.StartAsync("victim");
        var port = victim.Port;
        await using var b = await TestBackend.StartAsync("b");
        await using var c = await TestBackend.StartAsync("c");
        await using var proxy = await TestProxy.StartAsync($$"""
            routes: [{ name: main, pool: main }]
            pools:
              - name: main
                balancing: round_robin
                health:
                  active: { path: /health, interval: 1s, fast_interval: 250ms, healthy_after: 1 }
                backends: [{{victim.Address}}, {{b.Address}}, {{c.Address}}]
            """);
        TestBackend? reborn = null;
        var (served, failures, _) = await LoopAsync(proxy, TimeSpan.FromSeconds(10), parallel: 4, during: async () =>
        {
            await Task.Delay(3000);
            await victim.DisposeAsync(); // connections reset, the port refuses
            await Task.Delay(4000);
            reborn = await TestBackend.StartAsync("victim", port: port);
        });
        await using (reborn)
        {
            Assert.True(failures.Count == 0, $"{failures.Count} client-visible errors: {string.Join(" | ", failures.Take(5))}");
            Assert.True(served > 500, $"only {served} served");
            Assert.NotNull(reborn);
            Assert.True(reborn!.Seen.Count(s => s.PathAndQuery == "/") > 0, "the restarted backend got no traffic in the last 3 s");
        }
    }

    [Fact]
    public async Task Hang_ABackendThatNeverAnswers_CostsClientsNothingBeyondThePerTryTimeout()
    {
        await using var hang = await TestBackend.StartAsync("hang", async ctx => await Task.Delay(Timeout.Infinite, ctx.RequestAborted));
        await using var b = await TestBackend.StartAsync("b");
        await using var c = await TestBackend.StartAsync("c");
        await using var proxy = await TestProxy.StartAsync($$"""
            routes:
              - name: main
                pool: main
                retries: { attempts: 2, on: [connect_failure, reset, response_timeout], per_try_timeout: 200ms }
            pools:
              - name: main
                balancing: round_robin
                backends: [{{hang.Address}}, {{b.Address}}, {{c.Address}}]
            """);
        // Three clients: all of them can be waiting on the hanging backend at once and time out
        // together, and three simultaneous retries is the default budget's floor. (With four, the
        // fourth simultaneous retry is refused by the budget, as it should be: see the budget test.)
        var (served, failures, latencies) = await LoopAsync(proxy, TimeSpan.FromSeconds(3), parallel: 3);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(served > 50, $"only {served} served");
        latencies.Sort();
        var p99 = latencies[(int)(latencies.Count * 0.99)];
        Assert.True(p99 < 200 + 300, $"p99 {p99:0} ms");
        // After five timeouts in a row the hanging backend is ejected, so most requests never wait.
        Assert.Equal(Fulcrum.Health.HealthStatus.Ejected, proxy.Server.Runtime.Pool("main").Backends[0].Health.Status);
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("attempts").GetArrayLength() == 2);
        Assert.Equal("response_timeout", line.GetProperty("attempts")[0].GetProperty("result").GetString());
        Assert.True(proxy.Server.Runtime.Pool("main").RetriesByReason()["response_timeout"] >= 1);
    }

    /// <summary>A backend that reads the whole request body, then resets the connection without answering.</summary>
    private static Task<TestBackend> ResettingAfterBodyAsync(string name) => TestBackend.StartAsync(name, async ctx =>
    {
        await new StreamReader(ctx.Request.Body).ReadToEndAsync();
        ctx.Abort();
    });

    [Fact]
    public async Task Post_WithoutIdempotencyKey_IsNotRetriedOnceTheBackendHadIt()
    {
        await using var resetting = await ResettingAfterBodyAsync("resetting");
        await using var good = await TestBackend.StartAsync("good");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [resetting.Address, good.Address]));
        using var response = await proxy.Client.PostAsync("/orders", new StringContent("{\"item\":42}"));
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_reset", response.Headers.GetValues("Fulcrum-Error").Single());
        Assert.Equal(1, resetting.Count);
        Assert.Equal(0, good.Count);
    }

    [Theory]
    [InlineData("PUT", null)]
    [InlineData("POST", "Idempotency-Key")]
    public async Task IdempotentOrKeyed_IsRetriedOnAnotherBackend_WithItsWholeBody(string method, string? header)
    {
        await using var resetting = await ResettingAfterBodyAsync("resetting");
        string? bodySeen = null;
        await using var good = await TestBackend.StartAsync("good", async ctx =>
        {
            bodySeen = await new StreamReader(ctx.Request.Body).ReadToEndAsync();
            await ctx.Response.WriteAsync("stored");
        });
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [resetting.Address, good.Address]));
        var payload = new string('x', 20_000);
        using var request = new HttpRequestMessage(new HttpMethod(method), "/orders/7") { Content = new StringContent(payload) };
        if (header is not null)
        {
            request.Headers.TryAddWithoutValidation(header, "order-7-attempt-1");
        }
        using var response = await proxy.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(payload, bodySeen);
        Assert.Equal(1, resetting.Count);
    }

    [Fact]
    public async Task BodyLargerThanMaxBody_IsNotRetriedOnceItFlowed()
    {
        await using var resetting = await ResettingAfterBodyAsync("resetting");
        await using var good = await TestBackend.StartAsync("good");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [resetting.Address, good.Address], routeExtra: "    retries: { max_body: 1KiB }"));
        using var response = await proxy.Client.PutAsync("/big", new StringContent(new string('x', 5000)));
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal(0, good.Count);
    }

    [Fact]
    public async Task Post_ToARefusedBackend_IsRetriedOnAnotherAndSucceeds()
    {
        using var refused = Ports.Refusing();
        await using var good = await TestBackend.StartAsync("good", async ctx => await ctx.Response.WriteAsync(await new StreamReader(ctx.Request.Body).ReadToEndAsync()));
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [refused.Address, good.Address]));
        using var response = await proxy.Client.PostAsync("/orders", new StringContent("payload"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("payload", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task RetryableStatus_IsRetriedElsewhere_OrRelayedWhenNoRetryIsLeft()
    {
        await using var unavailable = await TestBackend.StartAsync("unavailable", ctx =>
        {
            ctx.Response.StatusCode = 503;
            ctx.Response.Headers["X-From"] = "unavailable";
            return Task.CompletedTask;
        });
        await using var good = await TestBackend.StartAsync("good");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("first", [unavailable.Address, good.Address], routeExtra: "    retries: { on: [503] }"));
        using (var response = await proxy.Client.GetAsync("/"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("good", await response.Content.ReadAsStringAsync());
        }
        await using var alone = await TestProxy.StartAsync(TestProxy.SinglePool("first", [unavailable.Address], routeExtra: "    retries: { on: [503], attempts: 1, backoff: { base: 1ms, max: 5ms } }"));
        using var relayed = await alone.Client.GetAsync("/");
        // The backend's own 503, as it sent it, after one retry: not a Fulcrum error.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, relayed.StatusCode);
        Assert.Equal("unavailable", relayed.Headers.GetValues("X-From").Single());
        Assert.False(relayed.Headers.Contains("Fulcrum-Error"));
    }

    [Fact]
    public async Task Budget_WhenEveryBackendFails_RetriesStayWithinTheBudget()
    {
        var attempts = 0;
        async Task Fail(HttpContext ctx)
        {
            Interlocked.Increment(ref attempts);
            await Task.Delay(300);
            ctx.Response.StatusCode = 503;
        }
        await using var a = await TestBackend.StartAsync("a", Fail);
        await using var b = await TestBackend.StartAsync("b", Fail);
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [a.Address, b.Address],
            routeExtra: "    retries: { attempts: 3, on: [503], backoff: { base: 1ms, max: 5ms } }",
            poolExtra: "    retry_budget: { percent: 20, min_concurrent: 3 }\n    health: { passive: { enabled: false } }"));
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 200 }) { BaseAddress = proxy.BaseUri };
        var responses = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => client.GetAsync("/")));
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode));
        // Without a budget: 100 requests x 4 tries = 400 attempts. With it, retries in flight stay
        // under 20% of the requests in flight (20 at first), so far fewer are made.
        Assert.InRange(attempts, 100, 100 + 20 + 20);
        Assert.True(proxy.Server.Runtime.Pool("main").RetryBudgetExhausted >= 60);
    }

    [Fact]
    public async Task Budget_DoesNotStopAFailoverAfterARefusedConnection()
    {
        // A budget of zero retries: a 503 is never retried, but a refused connection still fails
        // over to the next backend for every one of 50 concurrent requests (a rolling deploy).
        var refusing = await TestBackend.StartAsync("gone");
        var refusingAddress = refusing.Address;
        await refusing.DisposeAsync();
        await using var b = await TestBackend.StartAsync("b");
        await using var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [refusingAddress, b.Address],
            routeExtra: "    retries: { attempts: 2, on: [connect_failure, 503] }",
            poolExtra: "    retry_budget: { percent: 0, min_concurrent: 0 }\n    health: { passive: { enabled: false } }"));
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 100 }) { BaseAddress = proxy.BaseUri };
        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => client.GetAsync("/")));
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(0, proxy.Server.Runtime.Pool("main").RetryBudgetExhausted);
    }
}
