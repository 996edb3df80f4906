using System.Buffers;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Forwarding;

/// <summary>
/// Refuses requests whose framing a backend could read differently from Fulcrum (request
/// smuggling, RFC 9112 §6.1 and §11.2). Kestrel's parser already refuses bad characters, bad or
/// conflicting Content-Length values and a final coding other than chunked; this adds what Kestrel
/// lets through: several Transfer-Encoding values ("chunked, chunked", "gzip, chunked" or the
/// header twice), Transfer-Encoding in HTTP/1.0, and Transfer-Encoding with Content-Length
/// together. Kestrel hides the last case by renaming Content-Length to X-Content-Length, so that
/// is what is looked for. It also refuses control characters in header values (RFC 9110 §5.5:
/// only HTAB is allowed); Kestrel refuses CR, LF and NUL but passes the others on.
/// </summary>
internal static class RequestGuard
{
    private static readonly SearchValues<char> ControlCharacters = SearchValues.Create(
        "\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000a\u000b\u000c\u000d\u000e\u000f" +
        "\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f\u007f");

    /// <summary>Why the request must be refused with 400 and a closed connection, or null when it may go on.</summary>
    public static string? Check(HttpRequest request)
    {
        foreach (var header in request.Headers)
        {
            foreach (var value in header.Value)
            {
                if (value is not null && value.AsSpan().ContainsAny(ControlCharacters))
                {
                    return $"the value of header '{header.Key}' holds a control character";
                }
            }
        }

        var transferEncoding = request.Headers.TransferEncoding;
        if (transferEncoding.Count == 0)
        {
            return null;
        }
        if (HttpProtocol.IsHttp10(request.Protocol))
        {
            return "Transfer-Encoding is not allowed in an HTTP/1.0 request";
        }
        if (transferEncoding.Count > 1 || !string.Equals(transferEncoding[0]?.Trim(), "chunked", StringComparison.OrdinalIgnoreCase))
        {
            return $"Transfer-Encoding must be exactly 'chunked', got '{string.Join(", ", transferEncoding.ToArray())}'";
        }
        if (request.Headers.ContainsKey("X-Content-Length") || request.Headers.ContainsKey("Content-Length"))
        {
            return "the request has both Transfer-Encoding and Content-Length";
        }
        return null;
    }
}
