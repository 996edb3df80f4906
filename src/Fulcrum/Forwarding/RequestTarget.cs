using System.Buffers;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Forwarding;

/// <summary>
/// The path and query sent upstream. The path is the one Fulcrum routed on (Kestrel has decoded it
/// and removed dot segments), encoded again, so the backend sees exactly the path the route matched:
/// "/public/../admin" cannot reach an admin pool through a public route. The query goes as received.
/// </summary>
/// <remarks>
/// Kestrel decodes every escape but an encoded slash, which it leaves as the three characters
/// "%2F"; a decoded "%2F" may therefore come from a kept "%2F" or from "%252F" (an encoded percent
/// sign followed by "2F"). The raw target tells which: a raw "%2F" is a kept slash (and "%252F" does
/// not contain "%2F"). A raw target holding both is refused by <see cref="RequestGuard"/>.
/// </remarks>
internal static class RequestTarget
{
    // RFC 3986 pchar minus '%', plus '/': what a path may hold unescaped.
    private static readonly SearchValues<char> PathSafe =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/");

    public static string PathAndQuery(HttpRequest request, string? rawTarget)
    {
        var path = request.Path.Value;
        var query = request.QueryString.Value ?? "";
        if (string.IsNullOrEmpty(path))
        {
            return "/" + query;
        }
        if (!path.AsSpan().ContainsAnyExcept(PathSafe))
        {
            return query.Length == 0 ? path : string.Concat(path, query);
        }
        return EncodePath(path, keepEncodedSlash: HasEncodedSlash(rawTarget)) + query;
    }

    /// <summary>Whether the raw path (before any '?') holds an encoded slash.</summary>
    internal static bool HasEncodedSlash(string? rawTarget) => RawPath(rawTarget).Contains("%2F", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether the raw path holds an encoded percent sign followed by "2F".</summary>
    internal static bool HasEncodedPercentSlash(string? rawTarget) => RawPath(rawTarget).Contains("%252F", StringComparison.OrdinalIgnoreCase);

    private static ReadOnlySpan<char> RawPath(string? rawTarget)
    {
        var raw = rawTarget.AsSpan();
        var q = raw.IndexOf('?');
        return q < 0 ? raw : raw[..q];
    }

    internal static string EncodePath(string path, bool keepEncodedSlash)
    {
        var builder = new StringBuilder(path.Length + 16);
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (PathSafe.Contains(c))
            {
                builder.Append(c);
                continue;
            }
            // A slash Kestrel kept encoded goes on as it came; any other '%' is a literal percent
            // sign the client encoded, and is encoded again.
            if (keepEncodedSlash && c == '%' && i + 2 < path.Length && path[i + 1] == '2' && (path[i + 2] == 'F' || path[i + 2] == 'f'))
            {
                builder.Append(c);
                continue;
            }
            var length = char.IsHighSurrogate(c) && i + 1 < path.Length
                ? Encoding.UTF8.GetBytes(path.AsSpan(i++, 2), utf8)
                : Encoding.UTF8.GetBytes(path.AsSpan(i, 1), utf8);
            for (var b = 0; b < length; b++)
            {
                builder.Append('%').Append(((int)utf8[b]).ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        return builder.ToString();
    }
}
