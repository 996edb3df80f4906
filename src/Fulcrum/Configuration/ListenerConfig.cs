namespace Fulcrum.Configuration;

/// <summary>An address Fulcrum accepts client connections on.</summary>
public sealed record ListenerConfig(string Name, HostPort Address, string Protocol)
{
    /// <summary>The most client connections open at once; beyond, a connection is refused (503 too_many_connections on HTTP/1.1). Null: no limit.</summary>
    public int? MaxConnections { get; init; }

    /// <summary>HTTP/1.1 in cleartext.</summary>
    public const string HttpProtocol = "http";

    /// <summary>HTTP/2 in cleartext with prior knowledge (no upgrade), as gRPC clients inside a network use it.</summary>
    public const string H2cProtocol = "h2c";
}
