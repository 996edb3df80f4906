using System.Net;
using Fulcrum.Configuration;
using Fulcrum.Hosting;
using Fulcrum.Observability;
using Microsoft.Extensions.Logging;

namespace Fulcrum.Tests.TestSupport;

/// <summary>A real Fulcrum on 127.0.0.1 port 0, started from YAML, with its access log captured.</summary>
public sealed class TestProxy : IAsyncDisposable
{
    private TestProxy(FulcrumServer server, LogSink log)
    {
        Server = server;
        Log = log;
        var endPoint = server.ListenerEndPoint("web");
        BaseUri = new Uri($"http://{endPoint}");
        Client = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, UseCookies = false })
        {
            BaseAddress = BaseUri,
            Timeout = TimeSpan.FromSeconds(60),
        };
    }

    public FulcrumServer Server { get; }

    public LogSink Log { get; }

    public Uri BaseUri { get; }

    public IPEndPoint EndPoint => Server.ListenerEndPoint("web");

    public HttpClient Client { get; }

    /// <summary>
    /// Starts Fulcrum with <paramref name="poolsAndRoutes"/> (YAML for routes and pools) behind a
    /// listener named "web" on port 0.
    /// </summary>
    public static async Task<TestProxy> StartAsync(string poolsAndRoutes, string listenerProtocol = "http", string? admin = null, string? file = null)
    {
        var yaml = $"""
            listeners:
              - name: web
                address: 127.0.0.1:0
                protocol: {listenerProtocol}
            {poolsAndRoutes}
            {admin ?? ""}
            """;
        var loaded = file is null ? ConfigLoader.LoadText(yaml, "test.yaml") : LoadFile(file, yaml);
        Assert.True(loaded.Success, string.Join("\n", loaded.Errors) + "\n" + yaml);
        var log = new LogSink();
        var server = await FulcrumServer.StartAsync(loaded.Config!, new FulcrumServerOptions { AccessLog = AccessLog.ToStream(log), LogLevel = LogLevel.Warning });
        return new TestProxy(server, log);
    }

    /// <summary>Starts Fulcrum from a complete configuration file (it must have a listener named "web").</summary>
    public static async Task<TestProxy> StartFileAsync(string path)
    {
        var loaded = ConfigLoader.LoadFile(path);
        Assert.True(loaded.Success, string.Join("\n", loaded.Errors));
        var log = new LogSink();
        var server = await FulcrumServer.StartAsync(loaded.Config!, new FulcrumServerOptions { AccessLog = AccessLog.ToStream(log), LogLevel = LogLevel.Warning });
        return new TestProxy(server, log);
    }

    private static ConfigLoadResult LoadFile(string path, string yaml)
    {
        File.WriteAllText(path, yaml);
        return ConfigLoader.LoadFile(path);
    }

    /// <summary>An HttpClient for the admin API (with a bearer token when given).</summary>
    public HttpClient AdminClient(string? token = null)
    {
        var client = new HttpClient { BaseAddress = new Uri($"http://{Server.AdminEndPoint}"), Timeout = TimeSpan.FromSeconds(60) };
        if (token is not null)
        {
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        }
        return client;
    }

    /// <summary>One route "main" for every request to one pool "main" over the given backends.</summary>
    public static Task<TestProxy> StartAsync(string balancing, params TestBackend[] backends) =>
        StartAsync(SinglePool(balancing, backends.Select(b => $"{{ address: {b.Address}, name: {b.Name} }}").ToArray()));

    public static string SinglePool(string balancing, string[] backends, string routeExtra = "", string poolExtra = "") => $"""
        routes:
          - name: main
            pool: main
        {routeExtra}
        pools:
          - name: main
            balancing: {balancing}
        {poolExtra}
            backends:
        {string.Join("\n", backends.Select(b => "      - " + b))}
        """;

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
    }
}
