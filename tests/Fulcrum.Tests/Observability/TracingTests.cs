using System.Collections.Concurrent;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Observability;

/// <summary>W3C trace context reaches the backend; spans reach an OTLP collector.</summary>
[Collection(nameof(Integration.SerialTests))]
public class TracingTests
{
    [Fact]
    public async Task ClientsTrace_IsContinued_AndOneIsStartedWhenAbsent()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);

        using (var request = new HttpRequestMessage(HttpMethod.Get, "/with"))
        {
            request.Headers.TryAddWithoutValidation("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
            request.Headers.TryAddWithoutValidation("tracestate", "vendor=abc");
            (await proxy.Client.SendAsync(request)).Dispose();
        }
        var continued = backend.Last.Headers["traceparent"];
        Assert.Matches("^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-0[01]$", continued);
        Assert.Equal("vendor=abc", backend.Last.Headers["tracestate"]);

        (await proxy.Client.GetAsync("/without")).Dispose();
        var started = backend.Last.Headers["traceparent"];
        Assert.Matches("^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$", started);
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/without");
        Assert.Equal(started.Split('-')[1], line.GetProperty("trace_id").GetString());
    }

    [Fact]
    public void NewTraceParent_IsAValidUnsampledW3CContext_AndNeverRepeats()
    {
        var seen = new HashSet<string>();
        for (var i = 0; i < 1000; i++)
        {
            var traceparent = Fulcrum.Observability.Tracing.NewTraceParent();
            Assert.Matches("^00-[0-9a-f]{32}-[0-9a-f]{16}-00$", traceparent);
            Assert.True(System.Diagnostics.ActivityContext.TryParse(traceparent, null, out var parsed), traceparent);
            Assert.NotEqual(default, parsed.TraceId);
            Assert.True(seen.Add(parsed.TraceId.ToHexString()));
        }
    }

    [Fact]
    public async Task OtlpEndpoint_ReceivesTheRequestsSpan()
    {
        var bodies = new ConcurrentQueue<byte[]>();
        await using var collector = await TestBackend.StartAsync("collector", async ctx =>
        {
            using var body = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(body);
            if (ctx.Request.Path == "/v1/traces")
            {
                bodies.Enqueue(body.ToArray());
            }
        });
        await using var backend = await TestBackend.StartAsync();
        var proxy = await TestProxy.StartAsync(TestProxy.SinglePool("round_robin", [backend.Address]), admin: $"tracing: {{ otlp_endpoint: http://{collector.Address} }}");
        await using (proxy)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/traced");
            request.Headers.TryAddWithoutValidation("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
            (await proxy.Client.SendAsync(request)).Dispose();
            await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/traced");
        }
        // Disposing the server flushed the exporter: the span, with the client's trace id, arrived.
        Assert.NotEmpty(bodies);
        var traceId = Convert.FromHexString("0af7651916cd43dd8448eb211c80319c");
        Assert.Contains(bodies, b => b.AsSpan().IndexOf(traceId) >= 0);
        Assert.Equal("0af7651916cd43dd8448eb211c80319c", backend.Last.Headers["traceparent"].Split('-')[1]);
        Assert.NotEqual("b7ad6b7169203331", backend.Last.Headers["traceparent"].Split('-')[2]); // Fulcrum's span is the parent now
    }
}
