using Microsoft.Extensions.ObjectPool;

namespace Fulcrum.Forwarding;

/// <summary>Who Fulcrum was waiting on when the idle timer fired.</summary>
internal enum WaitingOn
{
    Backend,
    Client,
}

/// <summary>
/// One cancellation source per forwarded request, re-armed as the request moves through its
/// phases: while a body flows (either way) it is the idle timeout, re-armed on every chunk, so a
/// fast 100 MiB transfer never times out and a silent one does; between the end of the request and
/// the response headers it is the response timeout. It also fires when the client goes away.
/// Knowing which phase it was in is what turns a cancellation into the right error code.
/// </summary>
/// <remarks>
/// The cancellation source (and the runtime timer inside it) is pooled: a request that ends
/// without the timer firing hands it on, reset, to a later request. A body sender still running
/// after the exchange ended may call <see cref="Activity"/> late; arming and disposing take one
/// lock, so it never re-arms a source that already belongs to another request.
/// </remarks>
internal sealed class ForwardingTimer : IDisposable
{
    private static readonly ObjectPool<CancellationTokenSource> Sources =
        new DefaultObjectPool<CancellationTokenSource>(new SourcePolicy(), 4096);

    private CancellationTokenSource _source;
    private CancellationToken _token;
    private CancellationToken _clientAborted;
    private CancellationTokenRegistration _registration;
    private TimeSpan _idle;
    private bool _disposed;
    private bool _firedAtDispose;

    public ForwardingTimer(CancellationToken clientAborted, TimeSpan idle)
    {
        _source = Sources.Get();
        _token = _source.Token;
        _clientAborted = clientAborted;
        _idle = idle;
        _registration = clientAborted.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), _source);
    }

    /// <summary>
    /// Makes a disposed timer a new request's, as if just constructed. Only for a timer nothing
    /// refers to any more: its exchange sent the whole body, so no sender is left to arm it.
    /// </summary>
    public ForwardingTimer Reset(CancellationToken clientAborted, TimeSpan idle)
    {
        _source = Sources.Get();
        _token = _source.Token;
        _clientAborted = clientAborted;
        _idle = idle;
        _disposed = _firedAtDispose = false;
        AwaitingResponse = false;
        Armed = default;
        WaitingOn = WaitingOn.Backend;
        _registration = clientAborted.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), _source);
        return this;
    }

    /// <summary>Taken at the start: it stays valid (and cancelled, if it fired) after disposal.</summary>
    public CancellationToken Token => _token;

    /// <summary>True while waiting for response headers, when a firing means response_timeout.</summary>
    public bool AwaitingResponse { get; private set; }

    /// <summary>The timeout now armed, for the message that names it.</summary>
    public TimeSpan Armed { get; private set; }

    public WaitingOn WaitingOn { get; private set; }

    public bool ClientAborted => _clientAborted.IsCancellationRequested;

    public bool TimedOut => Fired && !_clientAborted.IsCancellationRequested;

    private bool Fired
    {
        get
        {
            lock (this)
            {
                return _disposed ? _firedAtDispose : _source.IsCancellationRequested;
            }
        }
    }

    /// <summary>Bytes moved, or about to: restart the idle clock.</summary>
    public void Activity(WaitingOn waitingOn)
    {
        WaitingOn = waitingOn;
        AwaitingResponse = false;
        Arm(_idle);
    }

    /// <summary>The request is sent: the backend now has the response timeout to answer.</summary>
    public void AwaitResponse(TimeSpan responseTimeout)
    {
        WaitingOn = WaitingOn.Backend;
        AwaitingResponse = true;
        Arm(responseTimeout);
    }

    /// <summary>Response headers arrived: from here on only the idle timeout applies.</summary>
    public void ResponseReceived() => Activity(WaitingOn.Backend);

    private void Arm(TimeSpan timeout)
    {
        Armed = timeout;
        lock (this)
        {
            // With Expect: 100-continue the handler (or a body sender the exchange left behind)
            // may still be sending after this timer was disposed; there is nothing left to time,
            // and the source may already be another request's.
            if (!_disposed)
            {
                // CancelAfter on a source that already fired is a no-op, which is what we want.
                _source.CancelAfter(timeout);
            }
        }
    }

    public void Dispose()
    {
        lock (this)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _firedAtDispose = _source.IsCancellationRequested;
        }
        // Waits for a client-abort callback that is running: after this nothing of this request
        // can cancel the source, and the pool's reset either stops its timer or sees it fired.
        _registration.Dispose();
        Sources.Return(_source);
    }

    /// <summary>A source goes back only when it can be reset: one that fired (or is firing) is dropped.</summary>
    private sealed class SourcePolicy : IPooledObjectPolicy<CancellationTokenSource>
    {
        public CancellationTokenSource Create() => new();

        public bool Return(CancellationTokenSource source)
        {
            if (source.TryReset())
            {
                return true;
            }
            source.Dispose();
            return false;
        }
    }
}
