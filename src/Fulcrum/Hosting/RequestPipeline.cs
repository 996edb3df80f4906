using System.Collections.Frozen;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Fulcrum.Configuration;
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
    private readonly HttpForwarder _forwarder;
    private readonly AccessLog _accessLog;

    private readonly ILogger _logger;
    private readonly FulcrumMetrics? _metrics;

    /// <summary>The pipeline over <paramref name="runtime"/>, logging to <paramref name="accessLog"/> and <paramref name="logger"/>.</summary>
    /// <param name="runtime">Routes, pools and health.</param>
    /// <param name="accessLog">Where each request's line goes.</param>
    /// <param name="logger">Where unexpected errors are logged.</param>
    /// <param name="metrics">Where requests are counted; null when metrics are off.</param>
    public RequestPipeline(FulcrumRuntime runtime, AccessLog accessLog, ILogger logger, FulcrumMetrics? metrics)
    {
        _runtime = runtime;
        _forwarder = new HttpForwarder(runtime.Tunnels, runtime.Time);
        _accessLog = accessLog;
        _logger = logger;
        _metrics = metrics;
    }

    /// <summary>Kestrel's request delegate: a Task is allocated only for a request that has to wait.</summary>
    public Task InvokeAsync(HttpContext context) => InvokeAsync(context, null);

    /// <summary>Kestrel's request delegate for a listener: a Task is allocated only for a request that has to wait.</summary>
    public Task InvokeAsync(HttpContext context, Configuration.ListenerConfig? listener)
    {
        var running = RunAsync(new KestrelExchange(context) { Listener = listener });
        return running.IsCompletedSuccessfully ? Task.CompletedTask : running.AsTask();
    }

    /// <summary>
    /// One request, start to finish, whichever front end read it: the answer (the backend's or
    /// Fulcrum's own), the span, the counters and the access log line.
    /// </summary>
    // Pooled: the state of a request that waits (most do) is reused rather than allocated.
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    public async ValueTask RunAsync(ProxyExchange context)
    {
        var record = context.NewRecord(RequestIds.Given(context));
        var activity = Tracing.Start(context, out var traceparent, out var tracestate);
        if (traceparent is null)
        {
            record.NewTraceParent();
        }
        else
        {
            record.TraceParent = traceparent;
        }
        record.TraceState = tracestate;
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
            if (!context.HasStarted)
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
                record.Status = context.Status;
            }
            record.Finish();
            // The span and the counters first: they must end even if writing the log line fails.
            Tracing.Stop(activity, context, record);
            _metrics?.RecordRequest(record);
            _accessLog.Write(context, record);
        }
    }

    /// <summary>
    /// <c>redirect_https</c>: the same host, path and query on HTTPS (the port left out when it is
    /// 443). A request without a Host cannot be sent anywhere and is refused.
    /// </summary>
    private static async Task RedirectAsync(ProxyExchange context, RequestRecord record, Configuration.RedirectHttpsConfig redirect)
    {
        var host = context.RouteHost;
        if (host.Length == 0)
        {
            record.Error = FulcrumError.BadRequest;
            await ErrorResponder.WriteAsync(context, FulcrumError.BadRequest, record, "This listener redirects to HTTPS, and the request has no Host to redirect to.", []).ConfigureAwait(false);
            return;
        }
        // An IPv6 literal keeps its brackets in a URL (RFC 3986 §3.2.2); the routed host has them already.
        var authority = host.Contains(':', StringComparison.Ordinal) && !host.StartsWith('[') ? $"[{host}]" : host;
        var location = redirect.Port == 443 ? $"https://{authority}{context.UpstreamTarget}" : $"https://{authority}:{redirect.Port}{context.UpstreamTarget}";
        context.Status = redirect.Status;
        context.SetHeader("Location", location);
        context.SetHeader("Content-Length", "0");
        context.SetRequestIdHeader(record);
        await context.WriteBodyAsync(ReadOnlyMemory<byte>.Empty, context.Aborted).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    private async ValueTask HandleAsync(ProxyExchange context, RequestRecord record)
    {
        var upgrade = default(UpgradeRequest);
        if (context is KestrelExchange kestrel)
        {
            // Fulcrum's own front end checks framing as it parses, and hands upgrades to Kestrel.
            if (RequestGuard.Check(kestrel.Context) is { } refusal)
            {
                record.Error = refusal.Error;
                await ErrorResponder.WriteAsync(context, refusal.Error, record, $"Refused: {refusal.Message}.", []).ConfigureAwait(false);
                return;
            }

            upgrade = UpgradeRequest.Of(kestrel.Context, out var upgradeRefusal);
            if (upgradeRefusal is not null)
            {
                record.Error = FulcrumError.UnsupportedUpgrade;
                await ErrorResponder.WriteAsync(context, FulcrumError.UnsupportedUpgrade, record, $"Refused: {upgradeRefusal}.", []).ConfigureAwait(false);
                return;
            }
        }

        context.Hsts = null;
        if (context.Listener?.RedirectHttps is { } redirect && !context.Path.StartsWith(Configuration.RedirectHttpsConfig.AcmeChallengePrefix, StringComparison.Ordinal))
        {
            await RedirectAsync(context, record, redirect).ConfigureAwait(false);
            return;
        }

        // Read the snapshot once: a reload during this request does not change what it sees.
        var snapshot = _runtime.Current;
        var method = upgrade.EffectiveMethod(context.Method);
        var route = snapshot.Routes.Match(context.RouteHost, context.Path, method, context);
        if (route is null)
        {
            record.Error = FulcrumError.NoRoute;
            var message = $"No route matches host '{context.RouteHost}' and path '{context.Path}' ({context.Method}).";
            await ErrorResponder.WriteAsync(context, FulcrumError.NoRoute, record, message, []).ConfigureAwait(false);
            return;
        }
        record.Route = route.Name;
        if (context.Tls is not null)
        {
            context.Hsts = route.Hsts;
        }
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

        var retry = route.Retry;
        var mayReplay = retry.Attempts > 0 && IsReplaySafe(method, context, retry);
        using var replay = mayReplay && context.CanHaveBody ? new RequestBodyBuffer(retry.MaxBody) : null;
        var candidates = available;
        var retries = 0;
        var holdingRetry = false;
        ForwardResult result = default;
        pool.EnterRequest();
        try
        {
            while (true)
            {
                var backend = pool.HasLimits
                    ? await AdmitAsync(pool, candidates, context.Aborted).ConfigureAwait(false)
                    : Begin(pool.Policy.Pick(pool, candidates));
                if (backend is null)
                {
                    pool.CountSaturated();
                    result = new ForwardResult(FulcrumError.PoolSaturated, "every backend is at its limit of requests in flight", 0, false, false);
                    break;
                }
                record.Backend = backend.DisplayName;
                var started = Stopwatch.GetTimestamp();
                var attemptStartMs = record.ElapsedMs;
                var ttfbBefore = record.TimeToFirstByteMs;
                // Hold a retryable status back only while another try could still follow it.
                var options = new AttemptOptions(
                    retry.PerTryTimeout is { } perTry && perTry < route.Timeouts.Response ? perTry : route.Timeouts.Response,
                    replay,
                    mayReplay && retries < retry.Attempts && retry.OnStatus.Count > 0 && !upgrade.Any ? retry.OnStatus : null,
                    upgrade);
                // A try that throws counts as failed, not as whatever the previous try returned.
                result = default;
                try
                {
                    result = await _forwarder.SendAsync(context, route, backend, record, options).ConfigureAwait(false);
                }
                finally
                {
                    backend.EndRequest(failed: !result.Succeeded && result.Error != FulcrumError.ClientAborted);
                    if (holdingRetry)
                    {
                        pool.EndRetry();
                        holdingRetry = false;
                    }
                }
                _runtime.Health.ReportTraffic(pool, backend, result);
                _metrics?.RecordAttempt(pool.Name, backend, result, record.ConnectMs, record.TimeToFirstByteMs != ttfbBefore ? record.TimeToFirstByteMs - attemptStartMs : -1);
                record.AddAttempt(new AttemptRecord(backend.DisplayName, result.Held is null ? result.Error : FulcrumError.None, result.Detail, result.UpstreamStatus, Stopwatch.GetElapsedTime(started).TotalMilliseconds));

                if (RetryReason(result, retry, mayReplay, replay, retries) is not { } reason)
                {
                    break;
                }
                // The next try goes to a backend not tried yet and still available now (one drained
                // or removed meanwhile takes no retries); when every one has been tried, it goes
                // round again after a backoff (no wait when it goes elsewhere).
                var next = StillAvailable(Without(candidates, backend), pool.Available);
                var again = next.Length == 0;
                // Going round again is for failures a moment may cure; once every backend has
                // refused the connection, nothing is listening and the client hears so at once.
                if (again && (retries >= retry.Attempts || ErrorCodes.IsConnectFailure(result.Error)))
                {
                    break;
                }
                // A failover after a refused connection is outside the budget: the backend never
                // saw the request, so it adds no load to anything failing, and it is bounded by the
                // pool's size. Under the budget, a rolling deploy with more clients than the
                // budget's floor would turn refusals into client errors.
                var failover = !again && ErrorCodes.IsConnectFailure(result.Error) && !result.MaybeSent;
                if (!failover && !pool.TryBeginRetry())
                {
                    break; // the budget is spent: the error (or held response) goes to the client
                }
                var following = again ? pool.Available : next;
                if (following.Length == 0)
                {
                    if (!failover)
                    {
                        pool.EndRetry();
                    }
                    break; // nowhere to go: a held response is relayed as it is
                }
                holdingRetry = !failover;
                pool.CountRetry(reason);
                _metrics?.RecordRetry(route.Name, reason);
                // A connect failure never reached a backend, so it does not use up an attempt
                // while untried backends remain; anything else does.
                if (!ErrorCodes.IsConnectFailure(result.Error) || again)
                {
                    retries++;
                }
                result.Held?.Dispose();
                candidates = following;
                if (again)
                {
                    await Task.Delay(Backoff(retry, retries), context.Aborted).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (context.Aborted.IsCancellationRequested)
        {
            result = new ForwardResult(FulcrumError.ClientAborted, "the client went away during a retry backoff", 0, false, false);
        }
        finally
        {
            if (holdingRetry)
            {
                pool.EndRetry();
            }
            pool.LeaveRequest();
        }

        if (result.Held is { } held)
        {
            // A retryable status that was not retried after all: the client gets it as it is.
            result = await _forwarder.RelayHeldAsync(context, held, record).ConfigureAwait(false);
        }
        record.BackendAnswered = result.Succeeded || result.ResponseStarted || context.HasStarted;
        if (result.Succeeded)
        {
            return;
        }
        record.Error = result.Error;
        if (result.ResponseStarted || context.HasStarted)
        {
            // Part of the response is already on its way: cut the connection so the client can
            // tell the body is incomplete, instead of ending it as if it were whole.
            record.Status = context.Status;
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

    private static BackendState Begin(BackendState backend)
    {
        backend.BeginRequest();
        return backend;
    }

    private static readonly FrozenSet<string> IdempotentMethods =
        new[] { "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE" }.ToFrozenSet(StringComparer.Ordinal);

    /// <summary>
    /// Whether a request the backend may have received can be sent again: its method is
    /// idempotent (RFC 9110 §9.2.2), or the client marked it with the idempotency header.
    /// </summary>
    private static bool IsReplaySafe(string method, ProxyExchange request, ResolvedRetry retry) =>
        IdempotentMethods.Contains(method) || request.Header(retry.IdempotencyHeader).Count > 0;

    /// <summary>
    /// Why this attempt's outcome may be retried (the reason it is counted under), or null when it
    /// may not. A connect failure may always be retried: the backend never saw the request. Any
    /// other failure only when the request is replay-safe, attempts are left, nothing of the
    /// response reached the client, and the body sent so far was kept.
    /// </summary>
    private static FulcrumError? RetryReason(in ForwardResult result, ResolvedRetry retry, bool replaySafe, RequestBodyBuffer? replay, int retries)
    {
        if (result.Held is not null)
        {
            // The forwarder holds a response only when the body can be sent again whole.
            return retries < retry.Attempts && replaySafe ? FulcrumError.None : null;
        }
        if (result.Succeeded || result.ResponseStarted)
        {
            return null;
        }
        var condition = result.Error switch
        {
            FulcrumError.ConnectRefused or FulcrumError.ConnectFailed => RetryConfig.ConnectFailure,
            FulcrumError.ConnectTimeout => RetryConfig.ConnectTimeout,
            FulcrumError.UpstreamReset => RetryConfig.Reset,
            FulcrumError.ResponseTimeout => RetryConfig.ResponseTimeout,
            _ => null,
        };
        if (condition is null || !retry.On.Contains(condition))
        {
            return null;
        }
        if (ErrorCodes.IsConnectFailure(result.Error) && !result.MaybeSent)
        {
            return result.Error;
        }
        if (!replaySafe || retries >= retry.Attempts || (result.RequestBodyStarted && (replay is null || replay.Overflowed)))
        {
            return null;
        }
        return result.Error;
    }

    /// <summary>Full jitter: a random wait up to base × 2^n, capped (AWS's "exponential backoff and jitter").</summary>
    private static TimeSpan Backoff(ResolvedRetry retry, int retries)
    {
        var ceiling = Math.Min(retry.BackoffMax.Ticks, retry.BackoffBase.Ticks << Math.Min(retries, 20));
#pragma warning disable CA5394 // jitter, not a secret
        return ceiling <= 0 ? TimeSpan.Zero : TimeSpan.FromTicks(Random.Shared.NextInt64(ceiling));
#pragma warning restore CA5394
    }

    private static string Describe(FulcrumError error, string route, PoolState pool, RequestRecord record)
    {
        var tried = record.Attempts.Count;
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
            FulcrumError.PoolSaturated => $"Every backend of pool '{pool.Name}' (route '{route}') is at its limit of requests in flight, and the queue is full or its wait ran out.",
            _ => $"The backend of pool '{pool.Name}' (route '{route}') broke the exchange.",
        };
    }

    private static List<BackendReport> Reports(RequestRecord record)
    {
        var reports = new List<BackendReport>();
        foreach (var a in record.Attempts)
        {
            reports.Add(new BackendReport(a.Backend, ErrorCodes.Code(a.Result), a.Detail ?? ""));
        }
        return reports;
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "request {RequestId} failed with an unexpected error")]
    private partial void LogUnexpected(string requestId, Exception exception);
}
