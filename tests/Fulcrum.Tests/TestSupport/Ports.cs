using System.Net;
using System.Net.Sockets;

namespace Fulcrum.Tests.TestSupport;

public static class Ports
{
    /// <summary>A loopback port nothing listens on (bound and released), so connecting to it is refused.</summary>
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
