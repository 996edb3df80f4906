using System.Diagnostics;
using Fulcrum.Forwarding;

namespace Fulcrum.Observability;

/// <summary>
/// What happened to one client request, filled in as it flows and written as one access log line.
/// </summary>
public sealed class RequestRecord
{
    /// <param name="requestId">The id; null: a new one.</param>
    public RequestRecord(string? requestId)
        : this(requestId, DateTimeOffset.UtcNow)
    {
    }

    /// <summary>A record that started at <paramref name="startTime"/> (tests).</summary>
    internal RequestRecord(string? requestId, DateTimeOffset startTime)
    {
        SetRequestId(requestId);
        StartTime = startTime;
        StartTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>
    /// Makes this record a new request's, as if just constructed: a front end that keeps one per
    /// connection reuses it, since nothing holds a record once its request has been logged.
    /// </summary>
    internal void Reset(string? requestId)
    {
        SetRequestId(requestId);
        StartTime = DateTimeOffset.UtcNow;
        StartTimestamp = Stopwatch.GetTimestamp();
        TraceParent = "";
        TraceState = null;
        Route = Pool = Backend = TunnelClosedBy = null;
        Status = 0;
        Tunnelled = BackendAnswered = false;
        Error = FulcrumError.None;
        ConnectMs = TimeToFirstByteMs = -1;
        BytesIn = BytesOut = 0;
        _durationMs = -1;
        _firstAttempt = default;
        _laterAttempts?.Clear();
        _attemptCount = 0;
    }

    private string? _requestId;
    private char[]? _madeRequestId;

    /// <summary>The request's id: the client's X-Request-Id when sane, else one Fulcrum made (a string only when asked for as one).</summary>
    public string RequestId => _requestId ??= new string(_madeRequestId!);

    /// <summary>The request id without making a string of one this record made itself.</summary>
    public ReadOnlySpan<char> RequestIdText => _requestId is { } text ? text : _madeRequestId;

    /// <summary>The client's id, or (null) a new one written into a buffer this record keeps.</summary>
    private void SetRequestId(string? given)
    {
        if (given is not null)
        {
            _requestId = given;
            return;
        }
        Hosting.RequestIds.New(_madeRequestId ??= new char[Hosting.RequestIds.NewLength]);
        _requestId = null;
    }

    /// <summary>The <c>traceparent</c> sent upstream (docs/observability.md).</summary>
    private string? _traceParent = "";
    private char[]? _madeTraceParent;

    /// <summary>The <c>traceparent</c> sent upstream (made into a string only when asked for as one).</summary>
    public string TraceParent
    {
        get => _traceParent ??= new string(_madeTraceParent!);
        set => _traceParent = value;
    }

    /// <summary>The <c>traceparent</c> without making a string of one this record made itself.</summary>
    public ReadOnlySpan<char> TraceParentText => _traceParent is { } text ? text : _madeTraceParent;

    /// <summary>
    /// Starts a new trace, not sampled (nothing records it), written into a buffer this record
    /// keeps: a record reused for the next request on a connection makes no string for it.
    /// </summary>
    internal void NewTraceParent()
    {
        Tracing.NewTraceParent(_madeTraceParent ??= new char[Tracing.TraceParentLength]);
        _traceParent = null;
    }

    public string? TraceState { get; set; }

    /// <summary>The trace id inside <see cref="TraceParent"/> (<c>vv-TRACEID-SPANID-ff</c>), without a copy.</summary>
    public ReadOnlySpan<char> TraceId => TraceParentText is { Length: >= 35 } text ? text.Slice(3, 32) : [];

    public DateTimeOffset StartTime { get; private set; }

    public long StartTimestamp { get; private set; }

    public string? Route { get; set; }

    public string? Pool { get; set; }

    /// <summary>The backend that produced the final response, or the last one tried.</summary>
    public string? Backend { get; set; }

    public int Status { get; set; }

    /// <summary>The request became a tunnel: its duration is the tunnel's life, not a response time.</summary>
    public bool Tunnelled { get; set; }

    /// <summary>Why Fulcrum closed the tunnel (tunnel_idle, tunnel_max, backend_drained, shutdown); null when an end did.</summary>
    public string? TunnelClosedBy { get; set; }

    public FulcrumError Error { get; set; }

    /// <summary>Milliseconds to connect to the backend; -1 when a pooled connection was reused.</summary>
    public double ConnectMs { get; set; } = -1;

    /// <summary>Milliseconds from the start of the request to the backend's response headers; -1 when none came.</summary>
    public double TimeToFirstByteMs { get; set; } = -1;

    public long BytesIn { get; set; }

    public long BytesOut { get; set; }

    /// <summary>The tries, in order; empty when no backend was tried.</summary>
    public AttemptList Attempts => new(this);

    /// <summary>True when the response (or the part of it sent) came from <see cref="Backend"/>, not from Fulcrum.</summary>
    public bool BackendAnswered { get; set; }

    public double ElapsedMs => Stopwatch.GetElapsedTime(StartTimestamp).TotalMilliseconds;

    private double _durationMs = -1;

    /// <summary>
    /// The whole request's milliseconds, fixed by <see cref="Finish"/> so the log line and the
    /// duration histogram tell the same time (and read the clock once); the time so far before.
    /// </summary>
    public double DurationMs => _durationMs >= 0 ? _durationMs : ElapsedMs;

    /// <summary>The request has ended: its duration stops here.</summary>
    public void Finish() => _durationMs = ElapsedMs;

    // The first try is kept inline: most requests have just the one, and it costs no list.
    private AttemptRecord _firstAttempt;
    private List<AttemptRecord>? _laterAttempts;
    private int _attemptCount;

    public void AddAttempt(AttemptRecord attempt)
    {
        if (_attemptCount == 0)
        {
            _firstAttempt = attempt;
        }
        else
        {
            (_laterAttempts ??= new List<AttemptRecord>(2)).Add(attempt);
        }
        _attemptCount++;
    }

    /// <summary>A request's tries, read without copying them.</summary>
    public readonly struct AttemptList(RequestRecord record)
    {
        public int Count => record._attemptCount;

        public AttemptRecord this[int index] =>
            (uint)index >= (uint)record._attemptCount ? throw new ArgumentOutOfRangeException(nameof(index))
            : index == 0 ? record._firstAttempt
            : record._laterAttempts![index - 1];

        public Enumerator GetEnumerator() => new(this);

        public struct Enumerator(AttemptList list)
        {
            private int _index = -1;

            public readonly AttemptRecord Current => list[_index];

            public bool MoveNext() => ++_index < list.Count;
        }
    }
}

/// <summary>One try of one backend: who, how it ended, and how long it took.</summary>
public readonly record struct AttemptRecord(string Backend, FulcrumError Result, string? Detail, int Status, double DurationMs);
