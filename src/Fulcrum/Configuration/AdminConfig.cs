namespace Fulcrum.Configuration;

/// <summary>Where the admin listener binds, and the file of tokens that may use it.</summary>
public sealed record AdminConfig(HostPort Address, string? TokenFile = null)
{
    public static HostPort DefaultAddress { get; } = new("127.0.0.1", 9901);

    /// <summary>Whether only this machine can reach the address (127.0.0.0/8, ::1 or localhost).</summary>
    public bool IsLoopback =>
        Address.Host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || Address.Ip is { } ip && System.Net.IPAddress.IsLoopback(ip);
}
