using Fulcrum.Observability;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Hosting;

/// <summary>
/// Takes Kestrel's own log for one listener. What a client caused (a request Kestrel's parser
/// refused, an HTTP/2 connection or stream error, an HPACK block it could not decode, a
/// connection whose processing ended in an exception) goes to <see cref="SummarisedLog"/>:
/// counted, and one line a second per kind without a stack trace. Anything else Kestrel says at
/// warning or above is Fulcrum's business (a failed bind, a pipeline exception) and is passed on
/// whole to <paramref name="passOn"/>.
/// </summary>
/// <param name="errors">Where client-caused errors are counted and summarised.</param>
/// <param name="listener">The listener's name now (a reload may rename it).</param>
/// <param name="passOn">Fulcrum's own log, for what Kestrel says that is not a client's fault.</param>
internal sealed class KestrelLog(SummarisedLog errors, Func<string> listener, ILoggerFactory passOn) : ILoggerProvider
{
    public const string Category = "Microsoft.AspNetCore.Server.Kestrel";

    public ILogger CreateLogger(string categoryName) =>
        categoryName.StartsWith(Category, StringComparison.Ordinal)
            ? new Logger(this, passOn.CreateLogger(categoryName), HearsDebug(categoryName) ? LogLevel.Debug : LogLevel.Warning)
            : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    public void Dispose()
    {
    }

    /// <summary>
    /// The kind of a client-caused event, or null when the event is not one: Kestrel's
    /// debug-level events that name a client's fault, and a connection that ended in an exception.
    /// </summary>
    internal static string? KindOf(LogLevel level, EventId id, Exception? exception)
    {
        switch (id.Name)
        {
            case "ConnectionBadRequest":
            case "RequestProcessingError":
                return "bad_request";
            case "HPackDecodingError":
                return "hpack_decoding";
            case "Http2ConnectionError":
                return "http2_connection_error";
            case "Http2StreamError":
                return "http2_stream_error";
            case "Http2FlowControlQueueOperationsExceeded":
            case "Http2TooManyEnhanceYourCalms":
                return "http2_abuse";
        }
        if (level < LogLevel.Warning || exception is null || id.Id != 0)
        {
            return null;
        }
        // "Connection processing ended abnormally": malformed input reached a Kestrel code path
        // that throws (an HPACK indexed field of index 0 raises IndexOutOfRangeException there).
        try
        {
            return exception.StackTrace?.Contains("HPackDecoder", StringComparison.Ordinal) == true ? "hpack_decoding" : "connection_error";
        }
        catch (Exception e) when (e is IOException or TypeLoadException)
        {
            return "connection_error"; // formatting the trace needs an assembly that could not load (no descriptors left)
        }
    }

    /// <summary>
    /// Kestrel logs its refusals and HTTP/2 errors at debug, in categories of their own; the
    /// general and connection categories stay at warning, since their debug events come once per
    /// request (keep-alive) and would cost the request path a call each.
    /// </summary>
    private static bool HearsDebug(string category) =>
        category.EndsWith(".BadRequests", StringComparison.Ordinal) || category.EndsWith(".Http2", StringComparison.Ordinal);

    private sealed class Logger(KestrelLog owner, ILogger passOn, LogLevel least) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= least;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (KindOf(logLevel, eventId, exception) is { } kind)
            {
                var what = formatter(state, exception);
                if (exception is not null)
                {
                    what = $"{what.TrimEnd('.')}: {exception.GetType().Name}: {exception.Message.TrimEnd('.')}";
                }
                owner.Errors.Report(owner.Listener(), kind, what);
            }
            else if (logLevel >= LogLevel.Warning)
            {
                passOn.Log(logLevel, eventId, state, exception, formatter);
            }
        }
    }

    private SummarisedLog Errors => errors;

    private Func<string> Listener => listener;
}
