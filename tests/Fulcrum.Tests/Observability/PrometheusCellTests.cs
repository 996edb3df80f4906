using System.Text;
using Fulcrum.Observability;

namespace Fulcrum.Tests.Observability;

/// <summary>A series' running total, added to by more threads than there are cores.</summary>
public class PrometheusCellTests
{
    private const int Threads = 8;
    private const int AddsEach = 30_000;

    private static string[] Written(PrometheusExporter.Cell cell, string name)
    {
        var text = new StringBuilder();
        cell.Write(text, name, new TagValues([]));
        return text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static void AddAtOnce(Action<int> add)
    {
        using var start = new Barrier(Threads);
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (var i = 0; i < AddsEach; i++)
            {
                add(i);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
    }

    [Fact]
    public void Every_add_is_counted_once_whichever_core_made_it()
    {
        var counter = new PrometheusExporter.Cell(histogram: false, integral: true);
        var sum = new PrometheusExporter.Cell(histogram: false, integral: false);
        AddAtOnce(_ =>
        {
            counter.Add(1);
            sum.Add(0.5);
        });
        Assert.Equal([$"c {Threads * AddsEach}"], Written(counter, "c"));
        // Halves add up exactly in a double at these totals.
        Assert.Equal([$"s {Threads * AddsEach / 2}"], Written(sum, "s"));
    }

    [Fact]
    public void A_histogram_added_to_at_once_has_exact_buckets_and_its_count_is_their_total()
    {
        var histogram = new PrometheusExporter.Cell(histogram: true, integral: false);
        // A third below the first bucket, a third in the 1 s bucket, a third above the last.
        double[] values = [0.0005, 0.7, 100];
        AddAtOnce(i => histogram.Add(values[i % 3]));
        var n = Threads * AddsEach;
        var lines = Written(histogram, "h");
        Assert.Contains($"h_bucket{{le=\"0.001\"}} {n / 3}", lines);
        Assert.Contains($"h_bucket{{le=\"0.5\"}} {n / 3}", lines);
        Assert.Contains($"h_bucket{{le=\"1\"}} {2 * n / 3}", lines);
        Assert.Contains($"h_bucket{{le=\"60\"}} {2 * n / 3}", lines);
        Assert.Contains($"h_bucket{{le=\"+Inf\"}} {n}", lines);
        Assert.Contains($"h_count {n}", lines);
        var sum = double.Parse(lines.Single(l => l.StartsWith("h_sum ", StringComparison.Ordinal))["h_sum ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(n / 3 * (0.0005 + 0.7 + 100), sum, 1e-6 * sum);
    }
}
