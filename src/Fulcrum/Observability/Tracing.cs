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
    internal static Activity? Start(Forwarding.ProxyExchange request, out string? traceparent, out string? tracestate)
    {
        var given = request.Header("traceparent");
        var state = request.Header("tracestate");
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
            traceparent = null; // the record makes one (RequestRecord.NewTraceParent)
            tracestate = null;
        }
        return activity;
    }

    /// <summary>
    /// A new trace, not sampled: <c>00-</c>, 16 random bytes of trace id and 8 of parent id in
    /// lowercase hex, <c>-00</c>. Written straight into the one string (the Activity id types would
    /// make three). Neither id may be all zeros.
    /// </summary>
    internal static string NewTraceParent() => string.Create(TraceParentLength, 0, static (text, _) => NewTraceParent(text));

    /// <summary>The length of a version 00 <c>traceparent</c>.</summary>
    internal const int TraceParentLength = 55;

    /// <summary>Writes a new trace's <c>traceparent</c> into <paramref name="text"/> (<see cref="TraceParentLength"/> characters).</summary>
    internal static void NewTraceParent(Span<char> text)
    {
        Span<byte> ids = stackalloc byte[24];
        do
        {
#pragma warning disable CA5394 // trace ids correlate, they guard nothing (W3C asks for randomness, not secrecy)
            Random.Shared.NextBytes(ids);
#pragma warning restore CA5394
        }
        while (!ids[..16].ContainsAnyExcept((byte)0) || !ids[16..].ContainsAnyExcept((byte)0));
        "00-".CopyTo(text);
        Convert.TryToHexStringLower(ids[..16], text[3..35], out _);
        text[35] = '-';
        Convert.TryToHexStringLower(ids[16..], text[36..52], out _);
        "-00".CopyTo(text[52..]);
    }

    /// <summary>Tags the span with what happened, at the end of the request.</summary>
    internal static void Stop(Activity? activity, Forwarding.ProxyExchange exchange, RequestRecord record)
    {
        if (activity is null)
        {
            return;
        }
        activity.SetTag("http.request.method", exchange.Method);
        activity.SetTag("url.path", exchange.Path);
        activity.SetTag("server.address", exchange.RouteHost);
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
