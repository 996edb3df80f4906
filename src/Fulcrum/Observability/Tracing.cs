using System.Diagnostics;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Observability;

/// <summary>
/// W3C trace context (https://www.w3.org/TR/trace-context/) for each proxied request. Every request
/// gets an <see cref="Activity"/> on the <c>Fulcrum</c> source when something listens (an
/// OpenTelemetry tracer, the OTLP exporter); the backend receives a <c>traceparent</c> that
/// continues the client's trace, or starts one when the client sent none.
/// </summary>
public static class Tracing
{
    public const string SourceName = "Fulcrum";

    public static ActivitySource Source { get; } = new(SourceName, typeof(Tracing).Assembly.GetName().Version?.ToString(3));

    /// <summary>
    /// Starts the request's span (null when nothing listens) and says what <c>traceparent</c> and
    /// <c>tracestate</c> to send upstream: the span's own when one was started; else the client's,
    /// unchanged; else a new trace, marked not sampled since nothing records it.
    /// </summary>
    internal static Activity? Start(HttpRequest request, out string traceparent, out string? tracestate)
    {
        var given = request.Headers["traceparent"];
        var state = request.Headers["tracestate"];
        ActivityContext parent = default;
        var hasParent = given.Count == 1 && ActivityContext.TryParse(given[0], state.Count > 0 ? state.ToString() : null, out parent);
        var activity = Source.HasListeners()
            ? Source.StartActivity("fulcrum.proxy", ActivityKind.Server, hasParent ? parent : default)
            : null;
        if (activity is not null)
        {
            traceparent = activity.Id!;
            tracestate = activity.TraceStateString;
        }
        else if (hasParent)
        {
            traceparent = given[0]!;
            tracestate = parent.TraceState;
        }
        else
        {
            traceparent = $"00-{ActivityTraceId.CreateRandom().ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-00";
            tracestate = null;
        }
        return activity;
    }

    /// <summary>Tags the span with what happened, at the end of the request.</summary>
    internal static void Stop(Activity? activity, HttpContext context, RequestRecord record)
    {
        if (activity is null)
        {
            return;
        }
        activity.SetTag("http.request.method", context.Request.Method);
        activity.SetTag("url.path", context.Request.Path.Value);
        activity.SetTag("server.address", context.Request.Host.Host);
        activity.SetTag("http.response.status_code", record.Status);
        activity.SetTag("fulcrum.request_id", record.RequestId);
        activity.SetTag("fulcrum.route", record.Route);
        activity.SetTag("fulcrum.pool", record.Pool);
        activity.SetTag("fulcrum.backend", record.Backend);
        if (record.Error != Forwarding.FulcrumError.None)
        {
            activity.SetTag("fulcrum.error", Forwarding.ErrorCodes.Code(record.Error));
            activity.SetStatus(record.Status >= 500 ? ActivityStatusCode.Error : ActivityStatusCode.Unset);
        }
        activity.Stop();
    }
}
