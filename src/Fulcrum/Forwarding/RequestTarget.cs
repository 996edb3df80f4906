using System.Buffers;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Forwarding;

/// <summary>
/// The path and query sent upstream. The path is the one Fulcrum routed on (Kestrel has decoded it
/// and removed dot segments), encoded again, so the backend sees exactly the path the route matched:
/// "/public/../admin" cannot reach an admin pool through a public route. The query goes as received.
/// </summary>
internal static class RequestTarget
{
    // RFC 3986 pchar minus '%', plus '/': what a path may hold unescaped.
    private static readonly SearchValues<char> PathSafe =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/");

    public static string PathAndQuery(HttpRequest request)
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
        return EncodePath(path) + query;
    }

    internal static string EncodePath(string path)
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
            // Kestrel leaves an encoded slash (%2F) encoded in the decoded path so that it cannot be
            // confused with a separator; pass it on as it came.
            if (c == '%' && i + 2 < path.Length && path[i + 1] == '2' && (path[i + 2] == 'F' || path[i + 2] == 'f'))
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
