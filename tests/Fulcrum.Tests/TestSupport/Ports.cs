using System.Net;
using System.Net.Sockets;

namespace Fulcrum.Tests.TestSupport;

public static class Ports
{
    /// <summary>
    /// A loopback port that refuses connections for as long as the returned socket lives: bound but
    /// never listening, so no other test's server can take it in the meantime (a released port
    /// can be, and then "refused" becomes a request into someone else's server).
    /// </summary>
    public static RefusingPort Refusing()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return new RefusingPort(socket);
    }

    /// <summary>A free loopback port to bind (bound and released: use it at once).</summary>
    public static int Unused()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>
    /// A listening socket that never accepts, with its accept queue filled, so that a further
    /// connect gets no answer: how a connect timeout looks, without leaving loopback.
    /// </summary>
    public static async Task<(Socket Listener, List<Socket> Fillers, int Port)> BlackHoleAsync()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var fillers = new List<Socket>();
        // Linux queues backlog+1 connections; fill it, and stop once connects start to hang.
        for (var i = 0; i < 8; i++)
        {
            var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            using var timeout = new CancellationTokenSource(300);
            try
            {
                await filler.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token);
                fillers.Add(filler);
            }
            catch (OperationCanceledException)
            {
                filler.Dispose();
                break;
            }
        }
        return (listener, fillers, port);
    }
}

/// <summary>A port that refuses connections while this lives.</summary>
public sealed class RefusingPort(Socket socket) : IDisposable
{
    public int Port { get; } = ((IPEndPoint)socket.LocalEndPoint!).Port;

    public string Address => $"127.0.0.1:{Port}";

    public void Dispose() => socket.Dispose();
}
