using System.Text.Json;
using System.Text.Json.Serialization;
using Fulcrum.Configuration;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Admin;

/// <summary>
/// The admin listener: Fulcrum's own <c>/healthz</c> and <c>/readyz</c>, and the JSON API under
/// <c>/api/v1</c> that reads and steers the one health truth (docs/admin-api.md). Every change is
/// an audit event naming who made it: the token's name, or the client address on an open API.
/// </summary>
internal sealed partial class AdminApi
{
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
        // JSON for people and tools, never embedded in HTML: no \u002B for '+' in times.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    private const string Prefix = "/api/v1/";

    private readonly FulcrumRuntime _runtime;
    private readonly AdminTokens _tokens;
    private readonly Func<bool> _ready;
    private readonly Action<string> _shutdown;
    private readonly Func<string> _scrape;

    public AdminApi(FulcrumRuntime runtime, AdminTokens tokens, AuditLog audit, Func<bool> ready, Action<string> shutdown, Func<string> scrape)
    {
        _scrape = scrape;
        _runtime = runtime;
        _tokens = tokens;
        Audit = audit;
        _ready = ready;
        _shutdown = shutdown;
    }

    public AuditLog Audit { get; }

    /// <summary>Reloads the configuration file (the server's reload), given who asked.</summary>
    internal Func<string, Task<Hosting.ReloadResult>>? Reload { get; init; }

    /// <summary>The configuration in force and how reloads have gone.</summary>
    internal Func<Hosting.ConfigStatus>? ConfigStatus { get; init; }

    /// <summary>The certificates TLS listeners serve, for GET /api/v1/certificates.</summary>
    internal Func<IReadOnlyList<CertificateView>>? Certificates { get; init; }

    public async Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value ?? "/";
        switch (path)
        {
            case "/healthz":
                await Text(context, 200, "ok\n").ConfigureAwait(false);
                return;
            case "/readyz":
                await (_ready() ? Text(context, 200, "ready\n") : Text(context, 503, "not ready: starting or shutting down\n")).ConfigureAwait(false);
                return;
        }
        if (!path.StartsWith(Prefix, StringComparison.Ordinal) && path != "/metrics")
        {
            await Error(context, 404, "not_found", $"no admin endpoint at {path}; the API is under {Prefix}").ConfigureAwait(false);
            return;
        }

        string who;
        if (_tokens.Required)
        {
            if (_tokens.Authenticate(context.Request.Headers.Authorization) is not { } name)
            {
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await Error(context, 401, "unauthorized", "send a token from admin.token_file as 'Authorization: Bearer TOKEN'").ConfigureAwait(false);
                return;
            }
            who = name;
        }
        else
        {
            who = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        }

        if (path == "/metrics")
        {
            // Behind the same token as the API when one is configured: metrics name every backend.
            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await context.Response.WriteAsync(_scrape(), context.RequestAborted).ConfigureAwait(false);
            return;
        }
        var segments = path[Prefix.Length..].TrimEnd('/').Split('/');
        var method = context.Request.Method;
        try
        {
            await DispatchAsync(context, method, segments, who).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            await Error(context, 400, "bad_json", $"the request body is not valid JSON: {e.Message}").ConfigureAwait(false);
        }
    }

    private Task DispatchAsync(HttpContext context, string method, string[] s, string who)
    {
        var get = HttpMethods.IsGet(method);
        var post = HttpMethods.IsPost(method);
        return s switch
        {
            ["pools"] when get => Ok(context, _runtime.Current.Pools.Values.Select(PoolView.Of).ToList()),
            ["pools", var pool] when get => WithPool(context, pool, p => Ok(context, PoolView.Of(p))),
            ["pools", var pool, "backends"] when get => WithPool(context, pool, p => Ok(context, p.Backends.Select(BackendView.Of).ToList())),
            ["pools", var pool, "backends"] when post => WithPool(context, pool, p => AddBackendAsync(context, p, who)),
            ["pools", var pool, "backends", var backend] when get => WithBackend(context, pool, backend, (p, b) => GetBackendAsync(context, p, b)),
            ["pools", var pool, "backends", var backend] when HttpMethods.IsDelete(method) => WithBackend(context, pool, backend, (p, b) => RemoveBackendAsync(context, p, b, who)),
            ["pools", var pool, "backends", var backend, "probe"] when post => WithBackend(context, pool, backend, (p, b) => ProbeAsync(context, p, b)),
            ["pools", var pool, "backends", var backend, var action] when post => WithBackend(context, pool, backend, (p, b) => OverrideAsync(context, p, b, action, who)),
            ["events"] when get => EventsAsync(context),
            ["events", "stream"] when get => EventStreamAsync(context),
            ["explain"] when get => ExplainAsync(context),
            ["config"] when get => ConfigAsync(context),
            ["config", "status"] when get && ConfigStatus is not null => Ok(context, ConfigStatus()),
            ["reload"] when post && Reload is not null => ReloadAsync(context, who),
            ["certificates"] when get && Certificates is not null => Ok(context, Certificates()),
            ["shutdown"] when post => ShutdownAsync(context, who),
            _ => Error(context, s.Length > 0 && s[0] is "pools" or "events" or "explain" or "config" or "shutdown" or "reload" or "certificates" ? 405 : 404, "not_found", $"no endpoint for {method} {Prefix}{string.Join('/', s)} (docs/admin-api.md lists them)"),
        };
    }

    private static async Task ConfigAsync(HttpContext context, FulcrumConfig config)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        await using var json = new Utf8JsonWriter(context.Response.Body, new JsonWriterOptions { Indented = true, Encoder = Json.Encoder });
        ConfigDocument.Write(json, config);
        await json.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private Task ConfigAsync(HttpContext context) => ConfigAsync(context, _runtime.Current.Config);

    /// <summary>POST shutdown: begins the graceful shutdown, as SIGTERM does.</summary>
    /// <summary>POST /api/v1/reload: 200 with what changed, or 422 with every error (the running configuration stays).</summary>
    private async Task ReloadAsync(HttpContext context, string who)
    {
        var result = await Reload!($"api:{who}").ConfigureAwait(false);
        Audit.Record("reload", "", "", who, result.Success ? Hosting.FulcrumServer.Summary(result.Changes!) : $"refused: {result.Errors.Count} error(s)", _runtime.Time.GetUtcNow());
        await Ok(context, result, result.Success ? 200 : 422).ConfigureAwait(false);
    }

    private Task ShutdownAsync(HttpContext context, string who)
    {
        var shutdown = _runtime.Current.Config.Shutdown;
        Audit.Record("shutdown", "", "", who, "graceful shutdown requested", _runtime.Time.GetUtcNow());
        _shutdown(who);
        return Ok(context, new
        {
            shutting_down = true,
            delay = Duration.Format(shutdown.Delay),
            drain_timeout = Duration.Format(shutdown.DrainTimeout),
        }, 202);
    }

    private Task WithPool(HttpContext context, string name, Func<PoolState, Task> action) =>
        _runtime.Current.Pools.TryGetValue(name, out var pool)
            ? action(pool)
            : Error(context, 404, "no_such_pool", $"no pool named '{name}'; pools are: {string.Join(", ", _runtime.Current.Pools.Keys)}");

    private Task WithBackend(HttpContext context, string pool, string backend, Func<PoolState, BackendState, Task> action) =>
        WithPool(context, pool, p => p.Find(backend) is { } b
            ? action(p, b)
            : Error(context, 404, "no_such_backend", $"pool '{pool}' has no backend named or at '{backend}'; it has: {string.Join(", ", p.Backends.Select(x => x.DisplayName))}"));

    internal static Task Ok(HttpContext context, object value, int status = 200) => WriteJson(context, status, value);

    internal static Task Error(HttpContext context, int status, string code, string message) =>
        WriteJson(context, status, new ErrorView(code, message));

    private static async Task WriteJson(HttpContext context, int status, object value)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        await JsonSerializer.SerializeAsync(context.Response.Body, value, value.GetType(), Json, context.RequestAborted).ConfigureAwait(false);
        await context.Response.Body.WriteAsync("\n"u8.ToArray(), context.RequestAborted).ConfigureAwait(false);
    }

    private static Task Text(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text);
    }

    /// <summary>A duration from the query string (<c>30s</c>), or <paramref name="fallback"/>.</summary>
    private static bool TryDuration(HttpContext context, string key, TimeSpan fallback, out TimeSpan value, out string error)
    {
        error = "";
        var text = context.Request.Query[key].ToString();
        if (text.Length == 0)
        {
            value = fallback;
            return true;
        }
        if (!Duration.TryParse(text, out value, out error))
        {
            error = $"{key}: {error}";
            return false;
        }
        return true;
    }

    /// <summary>Reads a JSON object body; no body at all (curl -X POST without -d) reads as an empty object.</summary>
    private static async Task<JsonElement> BodyAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body);
        var text = await reader.ReadToEndAsync(context.RequestAborted).ConfigureAwait(false);
        using var document = JsonDocument.Parse(string.IsNullOrWhiteSpace(text) ? "{}" : text);
        return document.RootElement.ValueKind == JsonValueKind.Object ? document.RootElement.Clone() : throw new JsonException("expected a JSON object");
    }

    private static string? String(JsonElement body, string name) =>
        body.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
