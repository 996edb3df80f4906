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

    internal HttpRequestMessage Request { get; }

    internal HttpResponseMessage Response { get; }

    internal ForwardingTimer Timer { get; }

    public void Dispose()
    {
        Response.Dispose();
        Request.Dispose();
        Timer.Dispose();
    }
}
