using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;

namespace Fulcrum.Forwarding;

/// <summary>A line of an error body: one backend and what happened with it.</summary>
public readonly record struct BackendReport(string Backend, string Code, string Detail);

/// <summary>
/// Writes the responses Fulcrum makes itself. Each carries <c>Fulcrum-Error: CODE</c> and a short
/// body that says what happened, to which backends, and what to check: plain text, or JSON when
/// the client accepts JSON. The access log line carries the same code and request id.
/// </summary>
internal static class ErrorResponder
{
    public static async Task WriteAsync(ProxyExchange exchange, FulcrumError error, RequestRecord record, string message, IReadOnlyList<BackendReport> backends)
    {
        var status = ErrorCodes.Status(error);
        var code = ErrorCodes.Code(error);
        var closeAfter = CloseAfter(error);
        exchange.ClearResponse();
        exchange.Status = status;
        exchange.SetHeader(HeaderRules.ErrorHeader, code);
        exchange.SetHeader(HeaderRules.RequestIdHeader, record.RequestId);
        exchange.SetHeader("Cache-Control", "no-store");
        if (exchange.Hsts is { } hsts)
        {
            exchange.SetHeader(HeaderRules.HstsHeader, hsts);
        }
        if (error == FulcrumError.PoolSaturated)
        {
            exchange.SetHeader("Retry-After", "1");
        }
        if (closeAfter)
        {
            // The framing of this connection can no longer be trusted: answer and close it.
            exchange.SetHeader("Connection", "close");
        }

        var hint = Hint(error);
        byte[] body;
        if (AcceptsJson(exchange))
        {
            exchange.SetHeader("Content-Type", "application/json; charset=utf-8");
            body = Json(status, code, message, hint, record, backends);
        }
        else
        {
            exchange.SetHeader("Content-Type", "text/plain; charset=utf-8");
            body = Encoding.UTF8.GetBytes(Text(status, code, message, hint, record, backends));
        }
        exchange.SetHeader("Content-Length", body.Length.ToString(CultureInfo.InvariantCulture));
        record.BytesOut = body.Length;
        if (!HttpMethods.IsHead(exchange.Method))
        {
            await exchange.WriteBodyAsync(body, exchange.Aborted).ConfigureAwait(false);
        }
        if (closeAfter)
        {
            await exchange.LingerAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Refusals after which the connection's framing cannot be trusted: the answer closes it.</summary>
    internal static bool CloseAfter(FulcrumError error) =>
        error is FulcrumError.BadRequest or FulcrumError.ClientTimeout or FulcrumError.UnsupportedTransferEncoding
            or FulcrumError.RequestLineTooLong or FulcrumError.HeadersTooLarge;

    internal static string Hint(FulcrumError error) => error switch
    {
        FulcrumError.NoRoute => "Check the match rules (host, path_prefix, path, methods, headers) of the routes in the configuration.",
        FulcrumError.NoHealthyBackend => "Every backend of the pool is out of rotation; the list above says why for each one.",
        FulcrumError.PoolSaturated => "Every backend is at its limit of requests in flight and the queue is full or was waited out: add backends, raise limits.max_requests, or slow the clients down (they were told when to retry).",
        FulcrumError.ConnectRefused => "Check that the backend is running and listening on that address and port.",
        FulcrumError.ConnectTimeout => "Check that the backend's host is up and reachable from Fulcrum and is not overloaded, or raise timeouts.connect.",
        FulcrumError.ConnectFailed => "Check the backend's address and that its host is reachable from Fulcrum.",
        FulcrumError.ResponseTimeout => "The backend was too slow to answer: look in its logs for this request, or raise timeouts.response for this route.",
        FulcrumError.IdleTimeout => "No bytes moved for longer than timeouts.idle: raise it for routes that are quiet for long (long polls, slow uploads).",
        FulcrumError.UpstreamReset => "The backend closed or reset the connection: look in its logs for a crash, restart or request size limit.",
        FulcrumError.UpstreamProtocolError => "The backend's answer is not valid HTTP/1.1: check that the address points at an HTTP server (not TLS or another protocol).",
        FulcrumError.ClientTimeout => "The client stopped sending its request for longer than timeouts.idle; raise it for routes with slow uploads.",
        FulcrumError.UnsupportedTransferEncoding => "Send the body with 'Transfer-Encoding: chunked' alone, or with a Content-Length; put compression in Content-Encoding.",
        FulcrumError.InternalError => "This is a bug in Fulcrum: its log has the details under the same request id; please report it.",
        FulcrumError.BadRequest => "The request is malformed and was refused before reaching any backend; fix the client.",
        FulcrumError.RequestLineTooLong => "The request line is longer than the listener allows (listeners[].limits.request_line): shorten the URL, or raise the limit.",
        FulcrumError.HeadersTooLarge => "The request headers are larger or more numerous than the listener allows (listeners[].limits.headers and header_count): look for oversized cookies, or raise the limits.",
        FulcrumError.RequestHeaderTimeout => "The client took longer than listeners[].timeouts.request_header to send its request head: a slow or stalled client (or a slowloris), or raise the timeout.",
        FulcrumError.TooManyConnections => "The listener has its max_connections open: raise listeners[].max_connections, add Fulcrum nodes, or find the clients that hold connections open.",
        FulcrumError.UpstreamTlsError => "TLS to the backend failed before the request was sent; the reason is above: fix the backend's certificate, or pools[].tls (server_name, ca, min_version, client_cert). docs/tls.md lists each reason.",
        FulcrumError.TlsRequired => "The client spoke plain HTTP to a port that speaks TLS: use an https:// URL, or send it to the listener without tls.",
        _ => "",
    };

    private static bool AcceptsJson(ProxyExchange exchange)
    {
        foreach (var accept in exchange.Header("Accept"))
        {
            if (accept is not null && accept.Contains("json", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// The whole answer to a connection refused before any request was read (a listener at its
    /// <c>max_connections</c>), or to a request head Fulcrum's front end refused: an HTTP/1.1
    /// response with the code and a sentence, then a close. <paramref name="retryAfter"/>: the
    /// refusal is about load, and the client may come back in a second.
    /// </summary>
    internal static byte[] ConnectionRefusal(FulcrumError error, string message, bool retryAfter = true)
    {
        var status = ErrorCodes.Status(error);
        var code = ErrorCodes.Code(error);
        var body = $"{status} {ReasonPhrases.GetReasonPhrase(status)}: {code}\n{message}\n{Hint(error)}\n";
        return Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"HTTP/1.1 {status} {ReasonPhrases.GetReasonPhrase(status)}\r\n{HeaderRules.ErrorHeader}: {code}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {body.Length}\r\nConnection: close\r\n{(retryAfter ? "Retry-After: 1\r\n" : "")}Date: {DateTimeOffset.UtcNow:R}\r\n\r\n{body}"));
    }

    private static string Text(int status, string code, string message, string hint, RequestRecord record, IReadOnlyList<BackendReport> backends)
    {
        var text = new StringBuilder(256);
        text.Append(CultureInfo.InvariantCulture, $"{status} {ReasonPhrases.GetReasonPhrase(status)}: {code}\n");
        text.Append(message).Append('\n');
        foreach (var b in backends)
        {
            text.Append(CultureInfo.InvariantCulture, $"  {b.Backend}: {b.Code}: {b.Detail}\n");
        }
        if (hint.Length > 0)
        {
            text.Append(hint).Append('\n');
        }
        text.Append(CultureInfo.InvariantCulture, $"request id: {record.RequestId}\n");
        return text.ToString();
    }

    private static byte[] Json(int status, string code, string message, string hint, RequestRecord record, IReadOnlyList<BackendReport> backends)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("error", code);
            json.WriteNumber("status", status);
            json.WriteString("message", message);
            if (record.Route is not null)
            {
                json.WriteString("route", record.Route);
            }
            if (record.Pool is not null)
            {
                json.WriteString("pool", record.Pool);
            }
            if (backends.Count > 0)
            {
                json.WriteStartArray("backends");
                foreach (var b in backends)
                {
                    json.WriteStartObject();
                    json.WriteString("backend", b.Backend);
                    json.WriteString("code", b.Code);
                    json.WriteString("detail", b.Detail);
                    json.WriteEndObject();
                }
                json.WriteEndArray();
            }
            if (hint.Length > 0)
            {
                json.WriteString("hint", hint);
            }
            json.WriteString("request_id", record.RequestId);
            json.WriteEndObject();
        }
        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }
}
