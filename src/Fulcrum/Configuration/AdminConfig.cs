namespace Fulcrum.Configuration;

/// <summary>Where the admin listener binds.</summary>
public sealed record AdminConfig(HostPort Address)
{
    public static HostPort DefaultAddress { get; } = new("127.0.0.1", 9901);
}
