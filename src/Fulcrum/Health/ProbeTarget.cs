using Fulcrum.Configuration;

namespace Fulcrum.Health;

/// <summary>What an HTTP probe of one backend sends, built once rather than on every probe.</summary>
internal sealed record ProbeTarget(HttpMethod Method, Uri Uri, string Host, string Passed200, ActiveHealthConfig Config)
{
    public static ProbeTarget For(ActiveHealthConfig config, HostPort endpoint, int port) => new(
        HttpMethod.Parse(config.Method),
        new Uri($"http://{endpoint.UriHost}:{port}{config.Path}"),
        config.Host ?? $"{endpoint.UriHost}:{port}",
        $"{config.Method} {config.Path} answered 200",
        config);
}
