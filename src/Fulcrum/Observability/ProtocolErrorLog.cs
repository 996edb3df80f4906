using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Observability;

/// <summary>
/// Protocol errors a client caused (a malformed HTTP/2 frame, an HPACK block Kestrel cannot
/// decode, a request line its parser refuses): each is counted in
/// <c>fulcrum_client_protocol_errors_total{listener, kind}</c>, and logged at most once a second
/// per listener and kind, in one line without a stack trace, with how many more came since. A
/// client that sends the same bad bytes on a thousand connections costs a counter and a line a
/// second, never a trace per connection.
/// </summary>
internal sealed partial class ProtocolErrorLog
{
    /// <summary>The least time between two lines of one listener and kind.</summary>
    internal static readonly TimeSpan Every = TimeSpan.FromSeconds(1);

    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly Counter<long> _count;
    private readonly Dictionary<(string Listener, string Kind), Slot> _slots = [];

    public ProtocolErrorLog(ILogger log, TimeProvider time, Meter meter)
    {
        _log = log;
        _time = time;
        _count = meter.CreateCounter<long>("fulcrum_client_protocol_errors_total", description: "Protocol errors clients caused, by listener and kind (logged at most once a second each).");
    }

    /// <summary>One error: counted always, logged unless a line of its kind went out within <see cref="Every"/>.</summary>
    public void Report(string listener, string kind, string what)
    {
        _count.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("kind", kind));
        long more;
        lock (_slots)
        {
            var now = _time.GetTimestamp();
            if (!_slots.TryGetValue((listener, kind), out var slot))
            {
                slot = new Slot { LastLine = now - (long)(Every.TotalSeconds * _time.TimestampFrequency) - 1 };
                _slots[(listener, kind)] = slot;
            }
            if (_time.GetElapsedTime(slot.LastLine, now) < Every)
            {
                slot.Held++;
                return;
            }
            more = slot.Held;
            slot.Held = 0;
            slot.LastLine = now;
        }
        if (more == 0)
        {
            LogFirst(listener, kind, what);
        }
        else
        {
            LogAgain(listener, kind, what, more);
        }
    }

    private sealed class Slot
    {
        public long LastLine;
        public long Held;
    }

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "client protocol error on listener '{Listener}' ({Kind}): {What}")]
    private partial void LogFirst(string listener, string kind, string what);

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "client protocol error on listener '{Listener}' ({Kind}): {What}; {More} more of this kind since the last line")]
    private partial void LogAgain(string listener, string kind, string what, long more);
}
