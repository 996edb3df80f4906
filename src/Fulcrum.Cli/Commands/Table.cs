using System.Text;
using System.Text.Json;

namespace Fulcrum.Cli.Commands;

/// <summary>Backends as a table a person reads at 3 a.m.: status coloured when the terminal allows it.</summary>
internal static class Table
{
    public static bool UseColor(TextWriter output) =>
        ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected
        && Environment.GetEnvironmentVariable("NO_COLOR") is null
        && Environment.GetEnvironmentVariable("TERM") is not (null or "dumb");

    public static void Backends(TextWriter output, IEnumerable<(string Pool, JsonElement Backend)> rows)
    {
        var color = UseColor(output);
        string[] header = ["POOL", "BACKEND", "ADDRESS", "STATUS", "WEIGHT", "IN FLIGHT", "TUNNELS", "SINCE", "REASON"];
        var lines = rows.Select(r => new[]
        {
            r.Pool,
            r.Backend.GetProperty("name").GetString()!,
            r.Backend.GetProperty("address").GetString()!,
            r.Backend.TryGetProperty("checked", out var proven) && !proven.GetBoolean()
                ? r.Backend.GetProperty("status").GetString() + " (unchecked)"
                : r.Backend.GetProperty("status").GetString()!,
            r.Backend.GetProperty("weight").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture),
            r.Backend.GetProperty("in_flight").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture),
            r.Backend.TryGetProperty("tunnels", out var tunnels) ? tunnels.GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture) : "-",
            r.Backend.GetProperty("since").GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture),
            r.Backend.GetProperty("reason").GetString()!,
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, lines.Count == 0 ? 0 : lines.Max(l => l[i].Length))).ToArray();
        output.WriteLine(Row(header, widths, color: false));
        foreach (var line in lines)
        {
            output.WriteLine(Row(line, widths, color));
        }
    }

    /// <summary>
    /// Certificates: names, days left, not-after, issuer, source and file, the listeners that use
    /// each, and the last reload's result (ok, or why the file on disk is not what serves).
    /// </summary>
    public static void Certificates(TextWriter output, JsonElement list)
    {
        string[] header = ["NAMES", "DAYS LEFT", "NOT AFTER", "ISSUER", "SOURCE", "LISTENERS", "FILE", "LAST RELOAD"];
        var lines = list.EnumerateArray().Select(c =>
        {
            var names = string.Join(",", c.GetProperty("names").EnumerateArray().Select(n => n.GetString()));
            var served = names.Length > 0;
            return new[]
            {
                served ? names : "(none serving)",
                served ? c.GetProperty("days_left").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture) : "-",
                served ? c.GetProperty("not_after").GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture) : "-",
                served ? c.GetProperty("issuer").GetString()! : "-",
                c.GetProperty("source").GetString()!,
                string.Join(",", c.GetProperty("listeners").EnumerateArray().Select(n => n.GetString())),
                c.GetProperty("file").GetString()!,
                c.TryGetProperty("problem", out var p) && p.ValueKind == JsonValueKind.String ? "REFUSED: " + p.GetString() : "ok",
            };
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, lines.Count == 0 ? 0 : lines.Max(l => l[i].Length))).ToArray();
        output.WriteLine(Row(header, widths, color: false));
        foreach (var line in lines)
        {
            output.WriteLine(Row(line, widths, color: false));
        }
        if (lines.Count == 0)
        {
            output.WriteLine("no TLS listener: no certificates");
        }
    }

    private static string Row(string[] cells, int[] widths, bool color)
    {
        var text = new StringBuilder();
        for (var i = 0; i < cells.Length; i++)
        {
            var cell = i == cells.Length - 1 ? cells[i] : cells[i].PadRight(widths[i]);
            text.Append(color && i == 3 ? Paint(cells[i], cell) : cell);
            if (i < cells.Length - 1)
            {
                text.Append("  ");
            }
        }
        return text.ToString().TrimEnd();
    }

    private static string Paint(string status, string cell) => status switch
    {
        "healthy (unchecked)" => $"\u001b[33m{cell}\u001b[0m",
        "healthy" => $"\u001b[32m{cell}\u001b[0m",
        "pending" => $"\u001b[33m{cell}\u001b[0m",
        "unhealthy" or "ejected" => $"\u001b[31m{cell}\u001b[0m",
        _ => $"\u001b[35m{cell}\u001b[0m",
    };
}
