using System.Collections.Frozen;
using System.Net.Http.Headers;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace Fulcrum.Forwarding;

/// <summary>
/// Which headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and
/// are dropped in both directions, together with every header the <c>Connection</c> header names.
/// Everything else is copied without validation: Kestrel and the upstream parser have already
/// checked the syntax, and re-validating would cost time and change values.
/// </summary>
internal static class HeaderRules
{
    /// <summary>Dropped in both directions. TE is handled apart: "TE: trailers" is kept (gRPC needs it).</summary>
    private static readonly FrozenSet<string> HopByHop = new[]
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Http2-Settings",
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    public const string RequestIdHeader = "X-Request-Id";

    /// <summary>Added by routes[].hsts on TLS (RFC 6797).</summary>
    public const string HstsHeader = "Strict-Transport-Security";

    /// <summary>A verified client certificate's subject, sent upstream with tls.forward_client_cert (and removed from what clients send, always).</summary>
    public const string ClientCertSubjectHeader = "X-Client-Cert-Subject";

    /// <summary>A verified client certificate's SHA-256 (lower-case hex), as <see cref="ClientCertSubjectHeader"/>.</summary>
    public const string ClientCertSha256Header = "X-Client-Cert-Sha256";

    /// <summary>
    /// A certificate subject as a header value: as it is when it is printable ASCII (nearly
    /// always), else with each other character percent-encoded as UTF-8, so a name in another
    /// script arrives whole and cannot break the head.
    /// </summary>
    public static string ClientCertSubject(string subject)
    {
        foreach (var c in subject)
        {
            if (c is < ' ' or > '~' or '%')
            {
                var text = new System.Text.StringBuilder(subject.Length + 16);
                Span<byte> utf8 = stackalloc byte[4];
                foreach (var r in subject.EnumerateRunes())
                {
                    if (r.Value is >= ' ' and <= '~' && r.Value != '%')
                    {
                        text.Append((char)r.Value);
                        continue;
                    }
                    var n = r.EncodeToUtf8(utf8);
                    foreach (var b in utf8[..n])
                    {
                        text.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
                    }
                }
                return text.ToString();
            }
        }
        return subject;
    }
    public const string ErrorHeader = "Fulcrum-Error";

    /// <summary>Copies the client's headers onto the upstream request, minus hop-by-hop ones and Host.</summary>
    public static void CopyRequestHeaders(HttpRequest source, HttpRequestMessage destination)
    {
        var headers = source.Headers;
        var connection = headers.Connection;
        foreach (var header in headers)
        {
            var name = header.Key;
            if (name.Length == 0 || name[0] == ':' || IsHopByHop(name, connection))
            {
                if (string.Equals(name, "TE", StringComparison.OrdinalIgnoreCase) && IsTrailersOnly(header.Value))
                {
                    destination.Headers.TryAddWithoutValidation("TE", "trailers");
                }
                continue;
            }
            if (string.Equals(name, "Host", StringComparison.OrdinalIgnoreCase))
            {
                continue; // set by the forwarder, per the pool's host_header mode
            }
            if (!TryAdd(destination.Headers, name, header.Value) && destination.Content is { } content)
            {
                // A content header (Content-Type, Content-Length …): it belongs on the content.
                TryAdd(content.Headers, name, header.Value);
            }
        }

        // One value (nearly always) goes in as a string: boxing StringValues as an
        // IEnumerable<string> cost an object and an enumerator per header.
        static bool TryAdd(HttpHeaders headers, string name, StringValues values) =>
            values.Count == 1
                ? headers.TryAddWithoutValidation(name, values[0])
                : headers.TryAddWithoutValidation(name, (IEnumerable<string>)values!);
    }

    /// <summary>
    /// Copies the backend's response headers to the client, minus hop-by-hop ones. Returns the
    /// first header Kestrel refuses to send (a control character in a value, a Content-Length
    /// that is not a number), or null when all were copied.
    /// </summary>
    public static string? CopyResponseHeaders(HttpHeaders source, IHeaderDictionary destination, StringValues connection, bool dropContentLength)
    {
        foreach (var header in source.NonValidated)
        {
            var name = header.Key;
            if (IsHopByHop(name, connection) || (dropContentLength && string.Equals(name, "Content-Length", StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }
            var values = header.Value;
            try
            {
                destination[name] = values.Count == 1 ? new StringValues(values.ToString()) : new StringValues([.. values]);
            }
            catch (InvalidOperationException)
            {
                return $"{name}: {values}";
            }
        }
        return null;
    }

    /// <summary>The same hop-by-hop headers, by their bytes (a head kept as bytes).</summary>
    internal static bool IsHopByHop(ReadOnlySpan<byte> name) =>
        name.Length switch
        {
            2 => System.Text.Ascii.EqualsIgnoreCase(name, "TE"u8),
            7 => System.Text.Ascii.EqualsIgnoreCase(name, "Trailer"u8) || System.Text.Ascii.EqualsIgnoreCase(name, "Upgrade"u8),
            10 => System.Text.Ascii.EqualsIgnoreCase(name, "Connection"u8) || System.Text.Ascii.EqualsIgnoreCase(name, "Keep-Alive"u8),
            14 => System.Text.Ascii.EqualsIgnoreCase(name, "Http2-Settings"u8),
            16 => System.Text.Ascii.EqualsIgnoreCase(name, "Proxy-Connection"u8),
            17 => System.Text.Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8),
            18 => System.Text.Ascii.EqualsIgnoreCase(name, "Proxy-Authenticate"u8),
            19 => System.Text.Ascii.EqualsIgnoreCase(name, "Proxy-Authorization"u8),
            _ => false,
        };

    /// <summary>The backend's Connection header, read without validation.</summary>
    public static StringValues ConnectionOf(HttpResponseMessage response)
    {
        if (!response.Headers.NonValidated.TryGetValues("Connection", out var values))
        {
            return StringValues.Empty;
        }
        return values.Count == 1 ? new StringValues(values.ToString()) : new StringValues([.. values]);
    }

    internal static bool IsHopByHop(string name, StringValues connection)
    {
        if (HopByHop.Contains(name))
        {
            return true;
        }
        // Any header named in Connection is hop-by-hop too (RFC 9110 §7.6.1): "Connection: X-Secret" drops X-Secret.
        foreach (var value in connection)
        {
            if (value is not null && ContainsToken(value, name))
            {
                return true;
            }
        }
        return false;
    }

    private static bool ContainsToken(string list, string token)
    {
        var span = list.AsSpan();
        while (span.Length > 0)
        {
            var comma = span.IndexOf(',');
            var item = (comma < 0 ? span : span[..comma]).Trim();
            if (item.Equals(token, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
            if (comma < 0)
            {
                break;
            }
            span = span[(comma + 1)..];
        }
        return false;
    }

    internal static bool IsTrailersOnly(StringValues values) =>
        values.Count == 1 && string.Equals(values[0]?.Trim(), "trailers", StringComparison.OrdinalIgnoreCase);
}
