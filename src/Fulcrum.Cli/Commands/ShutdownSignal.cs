using System.Runtime.InteropServices;

namespace Fulcrum.Cli.Commands;

/// <summary>
/// Turns SIGINT (Ctrl-C) and SIGTERM into a cancellation, so the process can stop cleanly:
/// stop accepting, let requests in flight finish, flush the access log, exit 0.
/// </summary>
internal sealed class ShutdownSignal : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly PosixSignalRegistration _interrupt;
    private readonly PosixSignalRegistration _terminate;

    public ShutdownSignal()
    {
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle);
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle);
    }

    public CancellationToken Token => _source.Token;

    public string? Received { get; private set; }

    private void Handle(PosixSignalContext context)
    {
        if (Received is not null)
        {
            // A second signal during the graceful shutdown: the operator wants out now, so let the
            // runtime end the process as it normally would.
            return;
        }
        // Keep the runtime from terminating the process at once: shutdown is ours to run.
        context.Cancel = true;
        Received = context.Signal.ToString();
        _source.Cancel();
    }

    public void Dispose()
    {
        _interrupt.Dispose();
        _terminate.Dispose();
        _source.Dispose();
    }
}
