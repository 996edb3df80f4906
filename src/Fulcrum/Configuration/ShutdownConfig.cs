namespace Fulcrum.Configuration;

/// <summary>
/// How Fulcrum stops: it turns <c>/readyz</c> to 503 at once, keeps accepting for
/// <see cref="Delay"/> (so an outer load balancer notices and stops sending), then stops accepting
/// and lets requests in flight finish for up to <see cref="DrainTimeout"/>, then closes the rest.
/// </summary>
public sealed record ShutdownConfig(TimeSpan Delay, TimeSpan DrainTimeout)
{
    public static ShutdownConfig Default { get; } = new(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30));
}
