using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Fulcrum.Configuration;

namespace Fulcrum.Forwarding.Http1;

/// <summary>
/// The kept-alive HTTP/1.1 connections to one backend. The most recently used idle connection is
/// taken first (so the others age out); a connection idle for <see cref="IdleTimeout"/> is closed,
/// before a typical backend's own keep-alive timeout is likely to race a request onto it. With a
/// connection limit, a request beyond it waits for a connection to come back or to close.
/// </summary>
internal sealed class Http1ConnectionPool : IDisposable
{
    /// <summary>How long a connection may sit idle before it is closed (as the SocketsHttpHandler pool was set).</summary>
    internal static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(50);

    private static readonly TimeSpan ReapEvery = TimeSpan.FromSeconds(10);

    private readonly EndPoint _endPoint;
    private readonly Stack<Http1Connection> _idle = new();
    private readonly Queue<TaskCompletionSource<Http1Connection?>> _waiters = new();
    private int _total;
    private bool _disposed;
    private Timer? _reaper;

    private readonly string _host;

    public Http1ConnectionPool(HostPort endpoint)
    {
        _host = endpoint.Host;
        _endPoint = endpoint.Ip is { } ip ? new IPEndPoint(ip, endpoint.Port) : new DnsEndPoint(endpoint.Host, endpoint.Port);
    }

    /// <summary>
    /// An idle connection that is still usable, or null when the caller may open a new one (its
    /// place under the limit is taken; <see cref="ConnectAsync"/> or <see cref="Release"/> gives it
    /// back). With <paramref name="fresh"/>, idle connections are passed over.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    public async ValueTask<Http1Connection?> RentAsync(int maxConnections, bool fresh, CancellationToken cancellationToken, UpstreamTls? tls = null)
    {
        while (true)
        {
            TaskCompletionSource<Http1Connection?> waiter;
            lock (_idle)
            {
                while (!fresh && _idle.TryPop(out var idle))
                {
                    if (idle.StillUsable() && ReferenceEquals(idle.Tls, tls))
                    {
                        return idle;
                    }
                    idle.Dispose(); // closed by the backend while idle: its place frees below
                }
                if (maxConnections <= 0 || _total < maxConnections || _disposed)
                {
                    _total++;
                    return null;
                }
                waiter = new TaskCompletionSource<Http1Connection?>(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.Enqueue(waiter);
            }
            Http1Connection? handed;
            try
            {
                handed = await waiter.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                if (!waiter.TrySetCanceled(cancellationToken) && waiter.Task.IsCompletedSuccessfully)
                {
                    // Handed something just as we gave up: pass it on.
                    if (waiter.Task.Result is { } connection)
                    {
                        Return(connection, reusable: true);
                    }
                    else
                    {
                        Release();
                    }
                }
                throw;
            }
            if (handed is not null)
            {
                // Made under other TLS settings (a reload changed pools[].tls): closed, not reused.
                if (handed.StillUsable() && ReferenceEquals(handed.Tls, tls))
                {
                    return handed;
                }
                handed.Dispose();
                continue;
            }
            return null; // a place freed and was given to us
        }
    }

    /// <summary>Opens a connection in the place <see cref="RentAsync"/> gave; the place is given back if it fails.</summary>
    public async ValueTask<Http1Connection> ConnectAsync(TimeSpan timeout, CancellationToken cancellationToken, UpstreamTls? tls = null)
    {
        System.Net.Security.SslStream? ssl = null;
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeoutSource.CancelAfter(timeout);
            try
            {
                await socket.ConnectAsync(_endPoint, timeoutSource.Token).ConfigureAwait(false);
                if (tls is not null)
                {
                    // The handshake is part of connecting: the connect timeout covers both.
                    ssl = await tls.AuthenticateAsync(socket, _host, timeoutSource.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new UpstreamConnectTimeoutException(timeout);
            }
            catch (SocketException e)
            {
                // As SocketsHttpHandler words it, so one classification serves both clients.
                throw new HttpRequestException(HttpRequestError.ConnectionError, $"{e.Message} ({_endPoint})", e);
            }
        }
        catch
        {
            socket.Dispose();
            Release();
            throw;
        }
        return new Http1Connection(socket, this, ssl, tls);
    }

    /// <summary>
    /// Takes a connection back after an exchange: kept when <paramref name="reusable"/> (handed
    /// straight to a waiting request, or idle with a read posted), else closed.
    /// </summary>
    public void Return(Http1Connection connection, bool reusable)
    {
        if (!reusable || connection.IsDisposed)
        {
            connection.Dispose();
            return;
        }
        lock (_idle)
        {
            if (!_disposed)
            {
                while (_waiters.TryDequeue(out var waiter))
                {
                    if (waiter.TrySetResult(connection))
                    {
                        return;
                    }
                }
                connection.StartIdle();
                if (!connection.IsDisposed)
                {
                    _idle.Push(connection);
                    _reaper ??= new Timer(static s => ((Http1ConnectionPool)s!).Reap(), this, ReapEvery, ReapEvery);
                }
                return;
            }
        }
        connection.Dispose();
    }

    /// <summary>A connection closed: its place is free for a waiting request.</summary>
    internal void Closed(Http1Connection connection) => Release();

    /// <summary>Gives back a place under the limit, to the first request still waiting for one.</summary>
    private void Release()
    {
        lock (_idle)
        {
            _total--;
            while (_waiters.TryDequeue(out var waiter))
            {
                if (waiter.TrySetResult(null))
                {
                    _total++; // the place passes to the waiter
                    return;
                }
            }
        }
    }

    /// <summary>Closes connections idle too long, or closed by the backend meanwhile.</summary>
    private void Reap()
    {
        List<Http1Connection>? closing = null;
        lock (_idle)
        {
            if (_idle.Count == 0)
            {
                _reaper?.Dispose();
                _reaper = null;
                return;
            }
            var now = Environment.TickCount64;
            var keep = new List<Http1Connection>(_idle.Count);
            // Popped newest first; pushed back oldest first, so the order stays.
            while (_idle.TryPop(out var c))
            {
                if (now - c.IdleSince >= (long)IdleTimeout.TotalMilliseconds || !c.StillUsable())
                {
                    (closing ??= []).Add(c);
                }
                else
                {
                    keep.Add(c);
                }
            }
            for (var i = keep.Count - 1; i >= 0; i--)
            {
                _idle.Push(keep[i]);
            }
        }
        if (closing is not null)
        {
            foreach (var c in closing)
            {
                c.Dispose();
            }
        }
    }

    /// <summary>Closes the idle connections; those in use close when they come back.</summary>
    public void Dispose()
    {
        Http1Connection[] idle;
        lock (_idle)
        {
            _disposed = true;
            idle = [.. _idle];
            _idle.Clear();
            _reaper?.Dispose();
            _reaper = null;
        }
        foreach (var c in idle)
        {
            c.Dispose();
        }
    }
}
