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

    /// <summary>The SHA-256 of the file's bytes as loaded (hex), so a watcher can tell a real change.</summary>
    public string? SourceHash { get; init; }

    public ShutdownConfig Shutdown { get; init; } = ShutdownConfig.Default;

    /// <summary>Whether requests are counted for /metrics (on by default).</summary>
    public bool MetricsEnabled { get; init; } = true;

    /// <summary>Where spans are exported over OTLP (HTTP/protobuf), or null for no export.</summary>
    public Uri? OtlpEndpoint { get; init; }

    /// <summary>Where admin overrides are kept across restarts, as written (null: beside the configuration file).</summary>
    public string? StateFile { get; init; }

    /// <summary>A path as written in the file, made absolute against the file's folder.</summary>
    public string? Resolve(string? path) => path is null ? null
        : SourcePath is { } source && !Path.IsPathRooted(path) ? Path.Combine(Path.GetDirectoryName(source)!, path) : path;

    /// <summary>
    /// The state file in effect: <see cref="StateFile"/>, else <c>NAME.state.json</c> beside the
    /// configuration file, else null (a configuration built in code keeps no state file).
    /// </summary>
    public string? EffectiveStateFile => StateFile is { } explicitPath
        ? (SourcePath is { } source && !Path.IsPathRooted(explicitPath) ? Path.Combine(Path.GetDirectoryName(source)!, explicitPath) : explicitPath)
        : SourcePath is { } config ? Path.Combine(Path.GetDirectoryName(config)!, Path.GetFileNameWithoutExtension(config) + ".state.json") : null;
}
