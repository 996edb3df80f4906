namespace Fulcrum.Configuration;

/// <summary>
/// Timeouts as written on a route or a pool; a null field means "not set here". A route's value
/// wins over its pool's, which wins over the built-in default.
/// </summary>
public sealed record TimeoutsConfig(TimeSpan? Connect, TimeSpan? Response, TimeSpan? Idle)
{
    public static TimeoutsConfig Unset { get; } = new(null, null, null);

    public static TimeSpan DefaultConnect { get; } = TimeSpan.FromSeconds(5);

    public static TimeSpan DefaultResponse { get; } = TimeSpan.FromSeconds(60);

    public static TimeSpan DefaultIdle { get; } = TimeSpan.FromSeconds(60);
}
