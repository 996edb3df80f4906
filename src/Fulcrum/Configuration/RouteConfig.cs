namespace Fulcrum.Configuration;

/// <summary>Match rules that send a request to one pool, with per-route timeouts.</summary>
public sealed record RouteConfig(string Name, RouteMatchConfig Match, string Pool, TimeoutsConfig Timeouts)
{
    public RetryConfig Retries { get; init; } = RetryConfig.Unset;

    /// <summary>Strict-Transport-Security on this route's responses over TLS; null: none.</summary>
    public HstsConfig? Hsts { get; init; }
}

/// <summary>
/// What a request must look like to take a route. Every rule given must hold; an absent rule matches anything.
/// </summary>
public sealed record RouteMatchConfig(
    string? Host,
    string? PathPrefix,
    string? Path,
    EquatableList<string> Methods,
    EquatableList<HeaderMatchConfig> Headers)
{
    public static RouteMatchConfig Any { get; } = new(null, null, null, EquatableList<string>.Empty, EquatableList<HeaderMatchConfig>.Empty);
}

/// <summary>A header that must be present, and when <see cref="Value"/> is set, equal to it (case-insensitive).</summary>
public sealed record HeaderMatchConfig(string Name, string? Value);
