namespace Fulcrum.Admin;

/// <summary>One change made through the admin API: what, to which backend, by whom, why, when.</summary>
public sealed record AuditEvent(long Sequence, string Action, string Pool, string Backend, string By, string Reason, DateTimeOffset At);

/// <summary>The last <see cref="Capacity"/> changes made through the admin API, oldest first.</summary>
public sealed class AuditLog
{
    public const int Capacity = 1000;

    private readonly Queue<AuditEvent> _events = new();
    private long _sequence;

    /// <summary>Raised for every new event (outside any lock Fulcrum holds).</summary>
    public event Action<AuditEvent>? Added;

    public AuditEvent Record(string action, string pool, string backend, string by, string reason, DateTimeOffset at)
    {
        AuditEvent e;
        lock (_events)
        {
            e = new AuditEvent(++_sequence, action, pool, backend, by, reason, at);
            _events.Enqueue(e);
            if (_events.Count > Capacity)
            {
                _events.Dequeue();
            }
        }
        Added?.Invoke(e);
        return e;
    }

    public IReadOnlyList<AuditEvent> Snapshot()
    {
        lock (_events)
        {
            return [.. _events];
        }
    }
}
