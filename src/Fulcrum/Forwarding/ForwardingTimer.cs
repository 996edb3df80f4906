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
internal sealed class ForwardingTimer : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly CancellationToken _clientAborted;
    private readonly CancellationTokenRegistration _registration;
    private readonly TimeSpan _idle;
    private int _disposed;

    public ForwardingTimer(CancellationToken clientAborted, TimeSpan idle)
    {
        _clientAborted = clientAborted;
        _idle = idle;
        _registration = clientAborted.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), _source);
    }

    public CancellationToken Token => _source.Token;

    /// <summary>True while waiting for response headers, when a firing means response_timeout.</summary>
    public bool AwaitingResponse { get; private set; }

    /// <summary>The timeout now armed, for the message that names it.</summary>
    public TimeSpan Armed { get; private set; }

    public WaitingOn WaitingOn { get; private set; }

    public bool ClientAborted => _clientAborted.IsCancellationRequested;

    public bool TimedOut => _source.IsCancellationRequested && !_clientAborted.IsCancellationRequested;

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
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }
        try
        {
            // CancelAfter on a source that already fired is a no-op, which is what we want.
            _source.CancelAfter(timeout);
        }
        catch (ObjectDisposedException)
        {
            // With Expect: 100-continue the handler may still be sending the body after the
            // exchange failed and this timer was disposed; there is nothing left to time.
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, 1);
        _registration.Dispose();
        _source.Dispose();
    }
}
