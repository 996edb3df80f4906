using Microsoft.AspNetCore.Http;

namespace Fulcrum.Forwarding;

/// <summary>
/// Refuses requests whose framing a backend could read differently from Fulcrum (request
/// smuggling, RFC 9112 §6.1 and §11.2). Kestrel's parser already refuses bad characters, bad or
/// conflicting Content-Length values and a final coding other than chunked; this adds what Kestrel
/// lets through: several Transfer-Encoding values ("chunked, chunked", "gzip, chunked" or the
/// header twice), Transfer-Encoding in HTTP/1.0, and Transfer-Encoding with Content-Length
/// together. Kestrel hides the last case by renaming Content-Length to X-Content-Length, so that
/// is what is looked for.
/// </summary>
internal static class RequestGuard
{
    /// <summary>Why the request must be refused with 400 and a closed connection, or null when it may go on.</summary>
    public static string? Check(HttpRequest request)
    {
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
