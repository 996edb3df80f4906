using Fulcrum.Configuration;

namespace Fulcrum.Forwarding;

/// <summary>Raised by the connect callback when a connect outlives the route's connect timeout.</summary>
public sealed class UpstreamConnectTimeoutException : Exception
{
    public UpstreamConnectTimeoutException(TimeSpan timeout)
        : base($"no connection within the connect timeout of {Duration.Format(timeout)}")
    {
        Timeout = timeout;
    }

    public UpstreamConnectTimeoutException()
        : this(TimeSpan.Zero)
    {
    }

    public UpstreamConnectTimeoutException(string message)
        : base(message)
    {
    }

    public UpstreamConnectTimeoutException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public TimeSpan Timeout { get; }
}
