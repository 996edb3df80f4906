namespace Fulcrum.Forwarding;

/// <summary>An upstream response received but not yet relayed; owns the exchange until it is relayed or disposed.</summary>
public sealed class HeldResponse : IDisposable
{
    internal HeldResponse(HttpRequestMessage request, HttpResponseMessage response, ForwardingTimer timer)
    {
        Request = request;
        Response = response;
        Timer = timer;
    }

    /// <summary>A response held on Fulcrum's own HTTP/1.1 pool: the exchange keeps its connection until relayed or disposed.</summary>
    internal HeldResponse(Http1.Http1Exchange exchange, ForwardingTimer timer)
    {
        Exchange = exchange;
        Timer = timer;
    }

    internal HttpRequestMessage? Request { get; }

    internal HttpResponseMessage? Response { get; }

    internal Http1.Http1Exchange? Exchange { get; }

    internal ForwardingTimer Timer { get; }

    public void Dispose()
    {
        Response?.Dispose();
        Request?.Dispose();
        Exchange?.Dispose();
        Timer.Dispose();
    }
}
