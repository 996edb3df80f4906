using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Observability;

/// <summary>
/// Events that can come by the thousand (a client's malformed bytes, accepts failing while file
/// descriptors are exhausted, connections refused at a listener's limit): each is counted in its
/// counter by listener and kind, and logged at most once a second per listener and kind, as one
/// line without a stack trace that says how many more came since the previous one. The count of a
/// burst's tail is in the counter even when no later line reports it.
/// </summary>
internal sealed partial class SummarisedLog
{
    /// <summary>The least time between two lines of one listener and kind.</summary>
    internal static readonly TimeSpan Every = TimeSpan.FromSeconds(1);

    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly Counter<long> _count;
    private readonly string _what;
    private readonly Dictionary<(string Listener, string Kind), Slot> _slots = [];

    /// <param name="log">Where the lines go.</param>
    /// <param name="time">The clock of the once-a-second rule.</param>
    /// <param name="count">Counts every event, with <c>listener</c> and <c>kind</c> labels.</param>
    /// <param name="what">What the events are, starting each line ("client protocol error").</param>
    public SummarisedLog(ILogger log, TimeProvider time, Counter<long> count, string what)
    {
        _log = log;
        _time = time;
        _count = count;
        _what = what;
    }

    /// <summary>One event: counted always, logged unless a line of its kind went out within <see cref="Every"/>.</summary>
    public void Report(string listener, string kind, string detail)
    {
        _count.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("kind", kind));
        long more;
        lock (_slots)
        {
            var now = _time.GetTimestamp();
            if (_slots.TryGetValue((listener, kind), out var slot) && _time.GetElapsedTime(slot.LastLine, now) < Every)
            {
                slot.Held++;
                return;
            }
            if (slot is null)
            {
                slot = new Slot();
                _slots[(listener, kind)] = slot;
            }
            more = slot.Held;
            slot.Held = 0;
            slot.LastLine = now;
        }
        if (more == 0)
        {
            LogFirst(_what, listener, kind, detail);
        }
        else
        {
            LogAgain(_what, listener, kind, detail, more);
        }
    }

    private sealed class Slot
    {
        public long LastLine;
        public long Held;
    }

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "{What} on listener '{Listener}' ({Kind}): {Detail}")]
    private partial void LogFirst(string what, string listener, string kind, string detail);

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "{What} on listener '{Listener}' ({Kind}): {Detail}; {More} more of this kind since the last line")]
    private partial void LogAgain(string what, string listener, string kind, string detail, long more);
}
