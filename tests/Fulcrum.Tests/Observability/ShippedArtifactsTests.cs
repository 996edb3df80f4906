using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Fulcrum.Runtime;
using Fulcrum.Tests.Configuration;

namespace Fulcrum.Tests.Observability;

/// <summary>The shipped alert rules and dashboard only name metrics Fulcrum exports.</summary>
public partial class ShippedArtifactsTests
{
    // Alerts may name metrics that a later issue adds; each is listed here with that issue.
    private static readonly string[] ComingLater = [];

    [GeneratedRegex("fulcrum_[a-z0-9_]+")]
    private static partial Regex MetricName();

    private static HashSet<string> Exported()
    {
        var config = ConfigLoader.LoadText("""
            listeners: [{ name: web, address: 127.0.0.1:0 }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9] }]
            """, "m.yaml").Config!;
        using var runtime = new FulcrumRuntime(config);
        using var metrics = new FulcrumMetrics(runtime, "test");
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (ReferenceEquals(instrument.Meter, metrics.Meter))
                {
                    names.Add(instrument.Name);
                }
            },
        };
        listener.Start();
        return names;
    }

    private static IEnumerable<string> Referenced(string text) =>
        MetricName().Matches(text).Select(m => Regex.Replace(m.Value, "_(bucket|sum|count)$", "")).Distinct();

    [Theory]
    [InlineData("deploy/prometheus/alerts.yml")]
    [InlineData("deploy/grafana/fulcrum.json")]
    public void EveryMetricNamed_IsExported(string file)
    {
        var exported = Exported();
        var text = File.ReadAllText(Path.Combine(ExamplesTests.RepositoryRoot(), file));
        var names = Referenced(text).ToList();
        Assert.NotEmpty(names);
        foreach (var name in names.Where(n => !ComingLater.Contains(n)))
        {
            Assert.True(exported.Contains(name), $"{file} names {name}, which Fulcrum does not export");
        }
    }

    [Fact]
    public void Alerts_HaveTheSixTheIssueNames()
    {
        var text = File.ReadAllText(Path.Combine(ExamplesTests.RepositoryRoot(), "deploy/prometheus/alerts.yml"));
        foreach (var alert in new[] { "FulcrumBackendDown", "FulcrumNoHealthyBackend", "FulcrumHighErrorRate", "FulcrumHighLatency", "FulcrumRetryStorm", "FulcrumConfigReloadFailed" })
        {
            Assert.Contains($"alert: {alert}", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Dashboard_IsValidJsonWithItsPanels()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(ExamplesTests.RepositoryRoot(), "deploy/grafana/fulcrum.json")));
        var titles = json.RootElement.GetProperty("panels").EnumerateArray().Select(p => p.GetProperty("title").GetString()).ToList();
        Assert.Contains("Requests per second, by backend", titles);
        Assert.Contains("Errors by code", titles);
        Assert.Contains("Latency percentiles", titles);
        Assert.Contains("Backend health over time (1 = takes traffic)", titles);
    }
}
