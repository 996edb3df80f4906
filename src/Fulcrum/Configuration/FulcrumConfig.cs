namespace Fulcrum.Configuration;

/// <summary>The whole configuration, as parsed and validated from one file.</summary>
public sealed record FulcrumConfig(
    EquatableList<ListenerConfig> Listeners,
    EquatableList<RouteConfig> Routes,
    EquatableList<PoolConfig> Pools,
    AdminConfig? Admin,
    AccessLogConfig AccessLog)
{
    /// <summary>The file this configuration came from, or null when built in code.</summary>
    public string? SourcePath { get; init; }
}
