using System.Diagnostics;
using Fulcrum.Forwarding;
using Fulcrum.Health;
using Fulcrum.Observability;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Hosting;

/// <summary>
/// The one terminal middleware every proxied request goes through:
/// guard → snapshot → route → pick → forward (another backend on connect failure) → respond → log.
/// </summary>
internal sealed partial class RequestPipeline
{
    private readonly FulcrumRuntime _runtime;
    private readonly HttpForwarder _forwarder = new();
    private readonly AccessLog _accessLog;

    private readonly ILogger _logger;

    public RequestPipeline(FulcrumRuntime runtime, AccessLog accessLog, ILogger logger)
    {
        _runtime = runtime;
        _accessLog = accessLog;
        _logger = logger;
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var record = new RequestRecord(RequestIds.FromOrNew(context.Request));
        try
        {
            await HandleAsync(context, record).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // A bug, not an expected failure (those are values): answer with a code rather than
            // Kestrel's bare 500, and log it with the request id the client was given.
            record.Error = FulcrumError.InternalError;
            LogUnexpected(record.RequestId, e);
            if (!context.Response.HasStarted)
            {
                await ErrorResponder.WriteAsync(context, FulcrumError.InternalError, record, "Fulcrum failed while handling this request.", []).ConfigureAwait(false);
            }
            else
            {
                context.Abort();
            }
        }
        finally
        {
            if (record.Status == 0)
            {
                record.Status = context.Response.StatusCode;
            }
            _accessLog.Write(context, record);
        }
    }

    private async Task HandleAsync(HttpContext context, RequestRecord record)
    {
        var request = context.Request;
        if (RequestGuard.Check(context) is { } refusal)
        {
            record.Error = refusal.Error;
            await ErrorResponder.WriteAsync(context, refusal.Error, record, $"Refused: {refusal.Message}.", []).ConfigureAwait(false);
            return;
        }

        // Read the snapshot once: a reload during this request does not change what it sees.
        var snapshot = _runtime.Current;
        var route = snapshot.Routes.Match(request.Host.Host, request.Path.Value ?? "/", request.Method, request.Headers);
        if (route is null)
        {
            record.Error = FulcrumError.NoRoute;
            var message = $"No route matches host '{request.Host.Host}' and path '{request.Path.Value}' ({request.Method}).";
            await ErrorResponder.WriteAsync(context, FulcrumError.NoRoute, record, message, []).ConfigureAwait(false);
            return;
        }
        record.Route = route.Name;
        var pool = route.Pool;
        record.Pool = pool.Name;

        var available = pool.Available;
        if (available.Length == 0)
        {
            record.Error = FulcrumError.NoHealthyBackend;
            var reports = new List<BackendReport>();
            foreach (var b in pool.Backends)
            {
                var health = b.Health;
                reports.Add(new BackendReport(b.DisplayName, HealthNames.Of(health.Status), $"{health.Reason} (since {health.Since:yyyy-MM-dd HH:mm:ss}Z)"));
            }
            var message = $"Pool '{pool.Name}' (route '{route.Name}') has {pool.Backends.Count} backend(s) and none may take traffic.";
            await ErrorResponder.WriteAsync(context, FulcrumError.NoHealthyBackend, record, message, reports).ConfigureAwait(false);
            return;
        }

        // A connect failure means the backend never saw the request, so another backend may always
        // be tried, for any method (nginx's proxy_next_upstream "error" default does the same).
        // Each backend is tried at most once.
        var candidates = available;
        ForwardResult result = default;
        for (var attempt = 0; ; attempt++)
        {
            var backend = pool.Policy.Pick(pool, candidates);
            record.Backend = backend.DisplayName;
            var started = Stopwatch.GetTimestamp();
            backend.BeginRequest();
            try
            {
                result = await _forwarder.SendAsync(context, route, backend, record).ConfigureAwait(false);
            }
            finally
            {
                backend.EndRequest(failed: !result.Succeeded && result.Error != FulcrumError.ClientAborted);
            }
            _runtime.Health.ReportTraffic(pool, backend, result);
            record.AddAttempt(new AttemptRecord(backend.DisplayName, result.Error, result.Detail, result.UpstreamStatus, Stopwatch.GetElapsedTime(started).TotalMilliseconds));

            if (result.Succeeded || !ErrorCodes.IsConnectFailure(result.Error) || result.RequestBodyStarted || candidates.Length == 1)
            {
                break;
            }
            candidates = Without(candidates, backend);
        }

        if (result.Succeeded)
        {
            return;
        }
        record.Error = result.Error;
        if (result.ResponseStarted || context.Response.HasStarted)
        {
            // Part of the response is already on its way: cut the connection so the client can
            // tell the body is incomplete, instead of ending it as if it were whole.
            record.Status = context.Response.StatusCode;
            context.Abort();
            return;
        }
        if (result.Error == FulcrumError.ClientAborted)
        {
            record.Status = ErrorCodes.Status(FulcrumError.ClientAborted);
            context.Abort();
            return;
        }
        await ErrorResponder.WriteAsync(context, result.Error, record, Describe(result.Error, route.Name, pool, record), Reports(record)).ConfigureAwait(false);
    }

    private static BackendState[] Without(BackendState[] candidates, BackendState tried)
    {
        var next = new BackendState[candidates.Length - 1];
        var i = 0;
        foreach (var c in candidates)
        {
            if (!ReferenceEquals(c, tried))
            {
                next[i++] = c;
            }
        }
        return next;
    }

    private static string Describe(FulcrumError error, string route, PoolState pool, RequestRecord record)
    {
        var tried = record.Attempts?.Count ?? 0;
        var total = pool.Backends.Count;
        return error switch
        {
            FulcrumError.ConnectRefused or FulcrumError.ConnectTimeout or FulcrumError.ConnectFailed when tried == total && total > 1 =>
                $"Fulcrum could not connect to any of the {total} backends of pool '{pool.Name}' (route '{route}').",
            FulcrumError.ConnectRefused or FulcrumError.ConnectTimeout or FulcrumError.ConnectFailed =>
                $"Fulcrum could not connect to the backend of pool '{pool.Name}' (route '{route}').",
            FulcrumError.ResponseTimeout => $"The backend of pool '{pool.Name}' (route '{route}') did not answer in time.",
            FulcrumError.IdleTimeout => $"The exchange with pool '{pool.Name}' (route '{route}') went idle.",
            FulcrumError.ClientTimeout => "The client stopped sending its request.",
            FulcrumError.BadRequest => "The request body is malformed.",
            _ => $"The backend of pool '{pool.Name}' (route '{route}') broke the exchange.",
        };
    }

    private static List<BackendReport> Reports(RequestRecord record)
    {
        var reports = new List<BackendReport>();
        if (record.Attempts is { } attempts)
        {
            foreach (var a in attempts)
            {
                reports.Add(new BackendReport(a.Backend, ErrorCodes.Code(a.Result), a.Detail ?? ""));
            }
        }
        return reports;
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "request {RequestId} failed with an unexpected error")]
    private partial void LogUnexpected(string requestId, Exception exception);
}
