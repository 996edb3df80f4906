namespace Fulcrum.Health;

/// <summary>
/// The last <see cref="Capacity"/> status changes of one backend, oldest first. Written only by
/// <see cref="HealthAuthority"/> under its pool lock; read through <see cref="Snapshot"/>.
/// </summary>
public sealed class HealthHistory
{
    public const int Capacity = 100;

    private readonly HealthEvent[] _ring = new HealthEvent[Capacity];
    private readonly object _lock = new();
    private int _next;
    private int _count;

    internal void Add(HealthEvent e)
    {
        lock (_lock)
        {
            _ring[_next] = e;
            _next = (_next + 1) % Capacity;
            _count = Math.Min(_count + 1, Capacity);
        }
    }

    public HealthEvent? Last
    {
        get
        {
            lock (_lock)
            {
                return _count == 0 ? null : _ring[(_next - 1 + Capacity) % Capacity];
            }
        }
    }

    public IReadOnlyList<HealthEvent> Snapshot()
    {
        lock (_lock)
        {
            var result = new HealthEvent[_count];
            var start = (_next - _count + Capacity) % Capacity;
            for (var i = 0; i < _count; i++)
            {
                result[i] = _ring[(start + i) % Capacity];
            }
            return result;
        }
    }
}
