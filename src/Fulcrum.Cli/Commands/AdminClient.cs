using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;

namespace Fulcrum.Cli.Commands;

/// <summary>
/// The CLI's side of the admin API: where it is (<c>--admin</c>, <c>FULCRUM_ADMIN</c>, default
/// http://127.0.0.1:9901) and which token to send (<c>--token-file</c>, <c>FULCRUM_TOKEN</c>).
/// Every failure becomes one line that says what to check.
/// </summary>
internal sealed class AdminClient : IDisposable
{
    private readonly HttpClient _http;

    public AdminClient(string? admin, string? tokenFile)
    {
        BaseUrl = (admin ?? Environment.GetEnvironmentVariable("FULCRUM_ADMIN") ?? "http://127.0.0.1:9901").TrimEnd('/');
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout.InfiniteTimeSpan };
        var token = ReadToken(tokenFile) ?? Environment.GetEnvironmentVariable("FULCRUM_TOKEN");
        if (!string.IsNullOrWhiteSpace(token))
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.Trim());
        }
    }

    public string BaseUrl { get; }

    /// <summary>The first token of a token file (<c>name:token</c> or a bare token).</summary>
    private static string? ReadToken(string? path)
    {
        if (path is null)
        {
            return null;
        }
        foreach (var raw in File.ReadAllLines(path))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            return colon > 0 ? line[(colon + 1)..].Trim() : line;
        }
        throw new AdminException($"the token file {path} holds no token");
    }

    public Task<(int Status, JsonElement Body)> GetAsync(string path, CancellationToken cancellationToken = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Get, BaseUrl + path), cancellationToken);

    public Task<(int Status, JsonElement Body)> PostAsync(string path, object? body, CancellationToken cancellationToken = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Post, BaseUrl + path) { Content = body is null ? null : JsonContent.Create(body) }, cancellationToken);

    public Task<(int Status, JsonElement Body)> DeleteAsync(string path, CancellationToken cancellationToken = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, BaseUrl + path), cancellationToken);

    /// <summary>Opens a streaming GET (server-sent events).</summary>
    public async Task<Stream> StreamAsync(string path, CancellationToken cancellationToken)
    {
        var response = await Call(() => _http.GetAsync(BaseUrl + path, HttpCompletionOption.ResponseHeadersRead, cancellationToken)).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            throw Refused((int)response.StatusCode, Parse(body));
        }
        return await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<(int, JsonElement)> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        using (request)
        {
            using var response = await Call(() => _http.SendAsync(request, cancellationToken)).ConfigureAwait(false);
            var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            var body = Parse(text);
            var status = (int)response.StatusCode;
            if (status is 401 or 403 or 404 or 405 or 400 or 409 or >= 500)
            {
                throw Refused(status, body);
            }
            return (status, body);
        }
    }

    private async Task<HttpResponseMessage> Call(Func<Task<HttpResponseMessage>> send)
    {
        try
        {
            return await send().ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            var why = e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused } ? "connection refused" : e.Message;
            throw new AdminException($"cannot reach the admin API at {BaseUrl}: {why} (is Fulcrum running with an admin section? set --admin or FULCRUM_ADMIN)");
        }
    }

    private AdminException Refused(int status, JsonElement body)
    {
        var message = body.ValueKind == JsonValueKind.Object && body.TryGetProperty("message", out var m) ? m.GetString() : null;
        return status == 401
            ? new AdminException($"the admin API at {BaseUrl} refused the token (401): pass --token-file or set FULCRUM_TOKEN")
            : new AdminException($"{status} {(HttpStatusCode)status}: {message ?? "no details"}");
    }

    private static JsonElement Parse(string text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return default;
        }
        try
        {
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException)
        {
            return JsonDocument.Parse(JsonSerializer.Serialize(new { message = text.Trim() })).RootElement.Clone();
        }
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>A failure talking to the admin API, already worded for the operator.</summary>
internal sealed class AdminException : Exception
{
    public AdminException(string message)
        : base(message)
    {
    }

    public AdminException()
    {
    }

    public AdminException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
