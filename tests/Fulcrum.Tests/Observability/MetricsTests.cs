using System.Net;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Observability;

/// <summary>Known traffic, then exact values in a scrape of /metrics.</summary>
public class MetricsTests
{
    private static async Task<string> ScrapeUntilAsync(HttpClient admin, params string[] lines)
    {
        var deadline = Environment.TickCount64 + 5000;
        while (true)
        {
            var text = await admin.GetStringAsync("/metrics");
            if (lines.All(l => text.Split('\n').Contains(l)) || Environment.TickCount64 > deadline)
            {
                return text;
            }
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Scrape_AfterKnownTraffic_HasExactCountsAndHistograms()
    {
        await using var good = await TestBackend.StartAsync("good");
        await using var bad = await TestBackend.StartAsync("bad", ctx =>
        {
            ctx.Response.StatusCode = 503;
            return Task.CompletedTask;
        });
        await using var good2 = await TestBackend.StartAsync("good2");
        using var dead = Ports.Refusing();
        using var dead2 = Ports.Refusing();
        await using var proxy = await TestProxy.StartAsync($$"""
            routes:
              - { name: ok, pool: good, match: { path: /ok } }
              - { name: fail, pool: bad, match: { path: /fail } }
              - { name: dead, pool: dead, match: { path: /dead } }
              - { name: retry, pool: mixed, match: { path: /retry } }
            pools:
              - { name: good, backends: [{ address: {{good.Address}}, name: g } ] }
              - { name: bad, backends: [{ address: {{bad.Address}}, name: b }] }
              - { name: dead, health: { passive: { enabled: false } }, backends: [{ address: {{dead.Address}}, name: d }] }
              - { name: mixed, balancing: first, health: { passive: { enabled: false } }, backends: [{ address: {{dead2.Address}}, name: d2 }, { address: {{good2.Address}}, name: g2 }] }
            """, admin: "admin: { address: 127.0.0.1:0 }");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await proxy.Client.GetAsync("/ok")).StatusCode);
        }
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await proxy.Client.GetAsync("/fail")).StatusCode);
        }
        Assert.Equal(HttpStatusCode.BadGateway, (await proxy.Client.GetAsync("/dead")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await proxy.Client.GetAsync("/retry")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await proxy.Client.GetAsync("/nowhere")).StatusCode);

        using var admin = proxy.AdminClient();
        string[] expected =
        [
            "fulcrum_requests_total{route=\"ok\",pool=\"good\",backend=\"g\",status=\"200\",error=\"\"} 3",
            "fulcrum_requests_total{route=\"fail\",pool=\"bad\",backend=\"b\",status=\"503\",error=\"\"} 2",
            "fulcrum_requests_total{route=\"dead\",pool=\"dead\",backend=\"\",status=\"502\",error=\"connect_refused\"} 1",
            "fulcrum_requests_total{route=\"retry\",pool=\"mixed\",backend=\"g2\",status=\"200\",error=\"\"} 1",
            "fulcrum_requests_total{route=\"\",pool=\"\",backend=\"\",status=\"404\",error=\"no_route\"} 1",
            "fulcrum_upstream_attempts_total{pool=\"good\",backend=\"g\",result=\"ok\"} 3",
            "fulcrum_upstream_attempts_total{pool=\"bad\",backend=\"b\",result=\"ok\"} 2",
            "fulcrum_upstream_attempts_total{pool=\"dead\",backend=\"d\",result=\"connect_refused\"} 1",
            "fulcrum_upstream_attempts_total{pool=\"mixed\",backend=\"d2\",result=\"connect_refused\"} 1",
            "fulcrum_upstream_attempts_total{pool=\"mixed\",backend=\"g2\",result=\"ok\"} 1",
            "fulcrum_retries_total{route=\"retry\",reason=\"connect_refused\"} 1",
            "fulcrum_errors_total{code=\"connect_refused\"} 1",
            "fulcrum_errors_total{code=\"no_route\"} 1",
            "fulcrum_request_duration_seconds_count{route=\"ok\",pool=\"good\"} 3",
            "fulcrum_request_duration_seconds_bucket{route=\"ok\",pool=\"good\",le=\"+Inf\"} 3",
            "fulcrum_upstream_response_duration_seconds_count{pool=\"good\",backend=\"g\"} 3",
            "fulcrum_upstream_connect_duration_seconds_count{pool=\"good\",backend=\"g\"} 1",
            "fulcrum_backend_up{pool=\"good\",backend=\"g\"} 1",
            "fulcrum_backend_health{pool=\"good\",backend=\"g\",status=\"healthy\"} 1",
            "fulcrum_backend_health{pool=\"good\",backend=\"g\",status=\"ejected\"} 0",
            "fulcrum_backend_in_flight{pool=\"good\",backend=\"g\"} 0",
            "fulcrum_retry_budget_exhausted_total{pool=\"good\"} 0",
            "fulcrum_build_info{version=\"0.1.0\"} 1",
        ];
        var text = await ScrapeUntilAsync(admin, expected);
        var lines = text.Split('\n');
        foreach (var line in expected)
        {
            Assert.True(lines.Contains(line), $"missing: {line}\n--- scrape ---\n{text}");
        }
        Assert.Contains("# TYPE fulcrum_requests_total counter", lines);
        Assert.Contains("# TYPE fulcrum_request_duration_seconds histogram", lines);
        Assert.Contains("# TYPE fulcrum_backend_up gauge", lines);
        Assert.Contains(lines, l => l.StartsWith("fulcrum_connections{listener=\"web\"} ", StringComparison.Ordinal));
        Assert.DoesNotContain("/ok", text, StringComparison.Ordinal); // no paths in labels
        Assert.DoesNotContain("127.0.0.1\"", text.Replace("backend=\"", "", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnotherListener_ReadsTheSameInstruments_AndTheScrapeCountsEachRequestOnce()
    {
        // The per-request instruments reach the exporter without its listener (FulcrumMetrics.ExportTo);
        // an OpenTelemetry-style listener must still see every measurement, and its subscription
        // must not make the exporter count anything twice.
        await using var backend = await TestBackend.StartAsync("b");
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var meter = proxy.Server.Metrics!.Meter;
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter, meter))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((i, value, _, _) => seen.AddOrUpdate(i.Name, value, (_, v) => v + value));
        listener.SetMeasurementEventCallback<double>((i, _, _, _) => seen.AddOrUpdate(i.Name, 1, (_, v) => v + 1));
        listener.Start();

        (await proxy.Client.GetAsync("/before")).Dispose(); // the listener is on from the start of this one
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await proxy.Client.GetAsync("/x")).StatusCode);
        }
        await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/x" && seen.GetValueOrDefault("fulcrum_requests_total") >= 5);

        Assert.Equal(5, seen["fulcrum_requests_total"]);
        Assert.Equal(5, seen["fulcrum_request_duration_seconds"]);
        Assert.Equal(5, seen["fulcrum_upstream_attempts_total"]);
        Assert.Equal(5, seen["fulcrum_upstream_response_duration_seconds"]);
        var lines = proxy.Server.ScrapeMetrics().Split('\n');
        Assert.Contains("fulcrum_requests_total{route=\"main\",pool=\"main\",backend=\"b\",status=\"200\",error=\"\"} 5", lines);
        Assert.Contains("fulcrum_upstream_attempts_total{pool=\"main\",backend=\"b\",result=\"ok\"} 5", lines);
        Assert.Contains("fulcrum_request_duration_seconds_count{route=\"main\",pool=\"main\"} 5", lines);
    }

    [Fact]
    public async Task HealthTransitionsProbesAndEjections_AreCounted()
    {
        await using var a = await TestBackend.StartAsync("a");
        using var refusing = Ports.Refusing();
        await using var proxy = await TestProxy.StartAsync($$"""
            routes: [{ name: main, pool: main }]
            pools:
              - name: main
                health: { active: { path: /h, interval: 30s, fast_interval: 100ms, unhealthy_after: 1 } }
                backends: [{ address: {{a.Address}}, name: a }, { address: {{refusing.Address}}, name: r }]
            """, admin: "admin: { address: 127.0.0.1:0 }");
        using var admin = proxy.AdminClient();
        var text = await ScrapeUntilAsync(admin,
            "fulcrum_health_transitions_total{pool=\"main\",backend=\"a\",to=\"healthy\"} 1",
            "fulcrum_health_transitions_total{pool=\"main\",backend=\"r\",to=\"unhealthy\"} 1",
            "fulcrum_backend_up{pool=\"main\",backend=\"r\"} 0");
        var lines = text.Split('\n');
        Assert.Contains("fulcrum_health_transitions_total{pool=\"main\",backend=\"a\",to=\"healthy\"} 1", lines);
        Assert.Contains("fulcrum_health_transitions_total{pool=\"main\",backend=\"r\",to=\"unhealthy\"} 1", lines);
        Assert.Contains("fulcrum_backend_up{pool=\"main\",backend=\"r\"} 0", lines);
        Assert.Contains("fulcrum_health_probes_total{pool=\"main\",backend=\"a\",result=\"success\"} 1", lines);
        Assert.Contains(lines, l => l.StartsWith("fulcrum_health_probes_total{pool=\"main\",backend=\"r\",result=\"failure\"} ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task MetricsDisabled_CountsNoRequests_ButKeepsHealthGauges()
    {
        await using var backend = await TestBackend.StartAsync("a");
        await using var proxy = await TestProxy.StartAsync($$"""
            routes: [{ name: all, pool: main }]
            pools:
              - { name: main, backends: [{ address: {{backend.Address}}, name: a }] }
            """, admin: "admin: { address: 127.0.0.1:0 }\nmetrics: { enabled: false }");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await proxy.Client.GetAsync("/")).StatusCode);
        }
        using var admin = proxy.AdminClient();
        var lines = (await ScrapeUntilAsync(admin, "fulcrum_backend_up{pool=\"main\",backend=\"a\"} 1")).Split('\n');
        Assert.Contains("fulcrum_backend_up{pool=\"main\",backend=\"a\"} 1", lines);
        Assert.DoesNotContain(lines, l => l.StartsWith("fulcrum_requests_total{", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("fulcrum_upstream_attempts_total{", StringComparison.Ordinal));
    }
}
