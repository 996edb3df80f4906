using System.Text;
using System.Text.RegularExpressions;

namespace Fulcrum.Tests.Frontend;

/// <summary>
/// A second, deliberately plain reading of RFC 9112's request head rules, written with strings and
/// regular expressions rather than spans, for the parser's fuzz test to compare against: whatever
/// the parser accepts, this must accept with the same framing. Slow, and never used but in tests.
/// </summary>
internal static partial class ReferenceRequestReader
{
    /// <summary>What the reading found: null when it refuses (or the head is not whole).</summary>
    public sealed record Reading(string Method, string Target, int Minor, IReadOnlyList<(string Name, string Value)> Headers, string Framing, long Length, int HeadLength);

    public static Reading? Read(byte[] bytes)
    {
        var text = Encoding.Latin1.GetString(bytes);
        var skipped = 0;
        while (skipped < 8 && text.Length - skipped >= 2 && text.Substring(skipped, 2) == "\r\n")
        {
            skipped += 2;
        }
        var end = text.IndexOf("\r\n\r\n", skipped, StringComparison.Ordinal);
        if (end < 0)
        {
            return null;
        }
        var lines = text[skipped..end].Split("\r\n");
        if (lines.Any(l => l.Contains('\r') || l.Contains('\n')))
        {
            return null;
        }
        var request = RequestLine().Match(lines[0]);
        if (!request.Success)
        {
            return null;
        }
        var method = request.Groups[1].Value;
        var target = request.Groups[2].Value;
        var minor = request.Groups[3].Value == "1" ? 1 : 0;
        var formOk = target.StartsWith('/')
            || (target == "*" && method == "OPTIONS")
            || (method == "CONNECT" && AuthorityText().IsMatch(target))
            || target.StartsWith("http://", StringComparison.OrdinalIgnoreCase)
            || target.StartsWith("https://", StringComparison.OrdinalIgnoreCase);
        if (!formOk)
        {
            return null;
        }
        var headers = new List<(string, string)>();
        foreach (var line in lines.Skip(1))
        {
            var field = FieldLine().Match(line);
            if (!field.Success)
            {
                return null;
            }
            headers.Add((field.Groups[1].Value, field.Groups[2].Value.Trim(' ', '\t')));
        }
        string Values(string name) => string.Join(",", headers.Where(h => string.Equals(h.Item1, name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Item2));
        var hosts = headers.Where(h => string.Equals(h.Item1, "Host", StringComparison.OrdinalIgnoreCase)).ToList();
        if (hosts.Count > 1 || (hosts.Count == 0 && minor == 1))
        {
            return null;
        }
        if (hosts.Count == 1 && !(hosts[0].Item2.Length == 0 ? minor == 0 : AuthorityText().IsMatch(hosts[0].Item2)))
        {
            return null;
        }
        var hasLength = headers.Any(h => string.Equals(h.Item1, "Content-Length", StringComparison.OrdinalIgnoreCase));
        var hasCoding = headers.Any(h => string.Equals(h.Item1, "Transfer-Encoding", StringComparison.OrdinalIgnoreCase));
        var framing = "none";
        long length = 0;
        if (hasCoding)
        {
            var codings = Values("Transfer-Encoding").Split(',').Select(c => c.Trim(' ', '\t')).ToList();
            if (minor == 0 || hasLength || codings.Count != 1 || !string.Equals(codings[0], "chunked", StringComparison.OrdinalIgnoreCase))
            {
                return null;
            }
            framing = "chunked";
        }
        else if (hasLength)
        {
            var values = Values("Content-Length").Split(',').Select(c => c.Trim(' ', '\t')).Distinct().ToList();
            if (values.Count != 1 || !Number().IsMatch(values[0]))
            {
                return null;
            }
            framing = "length";
            length = long.Parse(values[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        return new Reading(method, target, minor, headers, framing, length, end + 4);
    }

    [GeneratedRegex(@"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7E\x80-\xFF]+) HTTP/1\.([01])$")]
    private static partial Regex RequestLine();

    [GeneratedRegex(@"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7E\x80-\xFF]*)$")]
    private static partial Regex FieldLine();

    [GeneratedRegex(@"^[-._~!$&'()*+,;=:%\[\]0-9A-Za-z]+$")]
    private static partial Regex AuthorityText();

    [GeneratedRegex(@"^[0-9]{1,18}$")]
    private static partial Regex Number();
}
