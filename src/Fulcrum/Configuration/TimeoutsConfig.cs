namespace Fulcrum.Configuration;

/// <summary>
/// Timeouts as written on a route or a pool; a null field means "not set here". A route's value
/// wins over its pool's, which wins over the built-in default.
/// </summary>
public sealed record TimeoutsConfig(TimeSpan? Connect, TimeSpan? Response, TimeSpan? Idle)
{
    public static TimeoutsConfig Unset { get; } = new(null, null, null);

    /// <summary>How long an open tunnel (WebSocket or other upgrade) may stay silent both ways.</summary>
    public TimeSpan? TunnelIdle { get; init; }

    /// <summary>The longest an open tunnel may live, however busy; unset for no limit.</summary>
    public TimeSpan? TunnelMax { get; init; }

    public static TimeSpan DefaultConnect { get; } = TimeSpan.FromSeconds(5);

    public static TimeSpan DefaultResponse { get; } = TimeSpan.FromSeconds(60);

    public static TimeSpan DefaultIdle { get; } = TimeSpan.FromSeconds(60);

    /// <summary>An hour: a quiet WebSocket is normal, and a request's idle timeout would cut it.</summary>
    public static TimeSpan DefaultTunnelIdle { get; } = TimeSpan.FromHours(1);
}
