using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fulcrum.Hosting;

/// <summary>
/// The listening socket and its accept loop, in place of Kestrel's socket transport (whose
/// connections it still makes, through the public <see cref="SocketConnectionContextFactory"/>).
/// Owned here for what happens when accepting fails: Kestrel's loop retries at once, so with the
/// file descriptors exhausted it spins a core, and the runtime, starved of descriptors too, was
/// seen to abort with "Out of memory". This loop names the limit in one line a second, counts
/// each failure, gives up the <see cref="DescriptorReserve"/> so the runtime has room, and pauses
/// accepting until the reserve can be taken back; connections already open carry on.
/// </summary>
/// <param name="listener">The listener's name now (a reload may rename it).</param>
/// <param name="errors">Where failed accepts are counted and summarised.</param>
/// <param name="inline">Whether the connections' pipes run inline (Fulcrum's own front end; see <c>InlineScheduling</c>).</param>
internal sealed class FulcrumTransport(Func<string> listener, SummarisedLog errors, bool inline = false) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    /// <summary>How long accepting pauses after it failed for want of resources.</summary>
    internal static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(100);

    /// <summary>Kestrel's own default backlog.</summary>
    private const int Backlog = 512;

    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var ip = (IPEndPoint)endpoint;
        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (ip.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }
            socket.Bind(ip);
            socket.Listen(Backlog);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new AddressInUseException(e.Message, e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new ValueTask<IConnectionListener>(new Listener(socket, listener, errors, Pools, inline && Listener.InlineScheduling));
    }

    /// <summary>Kestrel's pinned block pools (from the app's services), for the connections' pipes.</summary>
    internal IMemoryPoolFactory<byte>? Pools { get; set; }

    private sealed class Listener(Socket socket, Func<string> listener, SummarisedLog errors, IMemoryPoolFactory<byte>? pools, bool inline) : IConnectionListener
    {
        private const System.Reflection.BindingFlags AnyInstance = System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic;

        private static readonly System.Reflection.PropertyInfo? PoolProperty = typeof(SocketConnectionFactoryOptions).GetProperty("MemoryPoolFactory", AnyInstance);

        // Whether the pinned pool can be given to the options; the connections' own pool needs no wrapper then.
        private readonly bool _pooled = CanPool(pools);

        private readonly SocketConnectionContextFactory _connections = new(Options(CanPool(pools) ? pools : null, inline), NullLogger.Instance);

        private static bool CanPool(IMemoryPoolFactory<byte>? pools) => pools is not null && PoolProperty?.PropertyType.IsInstanceOfType(pools) == true;

        /// <summary>
        /// The public options plus two settings Kestrel's own transport has and the public options
        /// give no setter for, so they are set by name (where a later Kestrel renames one, its
        /// fallback applies):
        /// <list type="bullet">
        /// <item>FIN rather than RST when Kestrel aborts a connection after refusing a request, so
        /// the client reads the refusal before the close (Kestrel takes it from its FinOnError
        /// switch, set in BuildApp); the fallback is a reset.</item>
        /// <item>Kestrel's pinned block pool for the pipes. The public default is an array pool
        /// that allocates a wrapper for every block it rents (about 20 bytes per request,
        /// measured with bench/alloc.sh) and rents an empty buffer for a size of 0; the fallback
        /// keeps that pool and wraps it for Kestrel's HTTP layer (<see cref="WholeBlocks"/>).</item>
        /// </list>
        /// </summary>
        /// <summary>
        /// The client connections' pipes run their continuations on the thread that completed the
        /// socket operation (the socket engine's, with the CLI's inline socket completions), not on
        /// the thread pool: Fulcrum's HTTP/1.1 loop then reads a request, sends it upstream, and
        /// relays the answer on one thread with no hand-off. Measured against the thread pool on
        /// 2026-12-04: +31% requests/s at 64 connections and +11% at 256, -32% and -14% CPU per
        /// request, p99 up from 3.4 to 7.5 ms at 64 (docs/performance.md). <c>FULCRUM_INLINE=0</c>
        /// goes back to the thread pool. Only for listeners Fulcrum's own front end serves: with
        /// Kestrel's HTTP layer on top (the admin listener, h2c, <c>server: kestrel</c>) an admin
        /// request that waits for a health change was seen to answer a heartbeat (1 s) late.
        /// </summary>
        internal static readonly bool InlineScheduling = Environment.GetEnvironmentVariable("FULCRUM_INLINE") != "0";

        private static SocketConnectionFactoryOptions Options(IMemoryPoolFactory<byte>? pools, bool inline)
        {
            var options = new SocketConnectionFactoryOptions
            {
                UnsafePreferInlineScheduling = inline,
            };
            typeof(SocketConnectionFactoryOptions).GetProperty("FinOnError", AnyInstance)?.SetValue(options, true);
            if (pools is not null)
            {
                PoolProperty!.SetValue(options, pools);
            }
            return options;
        }

        public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                try
                {
                    var accepted = await socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
                    accepted.NoDelay = true;
                    var connection = _connections.Create(accepted);
                    if (!_pooled && connection.Features.Get<IMemoryPoolFeature>() is { } pool)
                    {
                        connection.Features.Set<IMemoryPoolFeature>(WholeBlocks.Of(pool.MemoryPool));
                    }
                    return connection;
                }
                catch (ObjectDisposedException)
                {
                    return null; // unbound
                }
                catch (OperationCanceledException)
                {
                    return null;
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.OperationAborted or SocketError.Interrupted)
                {
                    return null; // unbound while waiting
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
                {
                    // The client gave up while its connection waited in the backlog: nothing to do.
                }
                catch (SocketException e)
                {
                    var exhausted = e.SocketErrorCode == SocketError.TooManyOpenSockets;
                    if (exhausted)
                    {
                        // Free the held-back descriptors for the runtime before anything else.
                        DescriptorReserve.Release();
                    }
                    errors.Report(listener(), exhausted ? "too_many_open_files" : "accept_failed", Describe(e, exhausted));
                    if (!await PauseAsync(cancellationToken).ConfigureAwait(false))
                    {
                        return null;
                    }
                }
                if (DescriptorReserve.Released && !await PauseAsync(cancellationToken).ConfigureAwait(false))
                {
                    return null;
                }
            }
        }

        /// <summary>
        /// Waits <see cref="Pause"/>, and on until the descriptor reserve is taken back (clients
        /// have left); false when the listener is stopping.
        /// </summary>
        private static async ValueTask<bool> PauseAsync(CancellationToken cancellationToken)
        {
            try
            {
                do
                {
                    await Task.Delay(Pause, cancellationToken).ConfigureAwait(false);
                }
                while (DescriptorReserve.Released && !DescriptorReserve.TryRetake());
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            _connections.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>
    /// The connection's memory pool as Kestrel's HTTP layer sees it, renting at least a block.
    /// The public factory's pool is an array pool whose <c>Rent(0)</c> is empty, and Kestrel
    /// rents with a size hint of 0 for a response body's <c>GetMemory()</c>: a body relay then
    /// read into no room and took it for the end of the body. Kestrel's own transport uses a
    /// pool of 4 KiB blocks, which this restores.
    /// </summary>
    private sealed class WholeBlocks(MemoryPool<byte> inner) : MemoryPool<byte>, IMemoryPoolFeature
    {
        private const int Block = 4096;
        private static WholeBlocks? _last;

        public static WholeBlocks Of(MemoryPool<byte> inner)
        {
            var last = Volatile.Read(ref _last);
            if (last is null || !ReferenceEquals(last._inner, inner))
            {
                last = new WholeBlocks(inner);
                Volatile.Write(ref _last, last);
            }
            return last;
        }

        private readonly MemoryPool<byte> _inner = inner;

        public MemoryPool<byte> MemoryPool => this;

        public override int MaxBufferSize => _inner.MaxBufferSize;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1) => _inner.Rent(Math.Max(minBufferSize, Block));

        protected override void Dispose(bool disposing)
        {
            // The transport owns the inner pool.
        }
    }

    private static string Describe(SocketException e, bool exhausted) => exhausted
        ? $"accept failed: too many open files (the process limit is {OpenFileLimit()}: raise it with LimitNOFILE= or ulimit -n, or fs.file-max if the system's table is full); connections already open carry on, and accepting resumes by itself once clients leave"
        : $"accept failed: {e.Message}; accepting pauses {Pause.TotalMilliseconds:0} ms";

    /// <summary>The soft limit on open files, from <c>/proc/self/limits</c> (read only when accepting fails).</summary>
    internal static string OpenFileLimit()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/limits"))
            {
                if (line.StartsWith("Max open files", StringComparison.Ordinal))
                {
                    return line["Max open files".Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No descriptor left to read it with, most likely: say so rather than fail.
        }
        return "unknown";
    }
}
