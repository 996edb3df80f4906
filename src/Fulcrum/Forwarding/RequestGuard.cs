using System.Buffers;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

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

    // A request target is visible ASCII only (RFC 9112 §3.2); Kestrel lets a bare CR through.
    private static readonly SearchValues<char> TargetInvalid = SearchValues.Create(
        "\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u0009\u000a\u000b\u000c\u000d\u000e\u000f" +
        "\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f\u0020\u007f");

    /// <summary>
    /// Why the request must be refused and the connection closed, or null when it may go on.
    /// The error is <see cref="FulcrumError.BadRequest"/> (400) for broken or ambiguous framing and
    /// <see cref="FulcrumError.UnsupportedTransferEncoding"/> (501) for a well-formed transfer coding
    /// other than chunked, which Fulcrum cannot pass on because it re-frames every body.
    /// </summary>
    public static (FulcrumError Error, string Message)? Check(HttpContext context)
    {
        var request = context.Request;
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (target is not null && target.AsSpan().ContainsAny(TargetInvalid))
        {
            return (FulcrumError.BadRequest, "the request target holds a control character or a space");
        }
        if (RequestTarget.HasEncodedSlash(target) && RequestTarget.HasEncodedPercentSlash(target))
        {
            // Kestrel decodes both to "%2F"; which was which cannot be told apart afterwards.
            return (FulcrumError.BadRequest, "the path holds both an encoded slash (%2F) and an encoded '%2F' text (%252F), which cannot be passed on unambiguously");
        }

        foreach (var header in request.Headers)
        {
            foreach (var value in header.Value)
            {
                if (value is not null && value.AsSpan().ContainsAny(ControlCharacters))
                {
                    return (FulcrumError.BadRequest, $"the value of header '{header.Key}' holds a control character");
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
            return (FulcrumError.BadRequest, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
        }
        if (request.Headers.ContainsKey("X-Content-Length") || request.Headers.ContainsKey("Content-Length"))
        {
            return (FulcrumError.BadRequest, "the request has both Transfer-Encoding and Content-Length");
        }

        // Kestrel has already refused a list whose last coding is not chunked.
        var codings = 0;
        var chunked = 0;
        foreach (var line in transferEncoding)
        {
            foreach (var coding in (line ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                codings++;
                if (coding.Equals("chunked", StringComparison.OrdinalIgnoreCase))
                {
                    chunked++;
                }
            }
        }
        var all = string.Join(", ", transferEncoding.ToArray());
        if (chunked > 1)
        {
            return (FulcrumError.BadRequest, $"Transfer-Encoding names chunked more than once: '{all}'");
        }
        if (codings != 1 || chunked != 1)
        {
            return (FulcrumError.UnsupportedTransferEncoding, $"Transfer-Encoding '{all}' is not supported; only 'chunked' is");
        }
        return null;
    }
}
