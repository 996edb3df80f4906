using Fulcrum.Configuration;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Routing;

public class RouteTableTests
{
    private static RuntimeSnapshot Build(string routes)
    {
        var yaml = $"""
            listeners: [{"{"} name: web, address: 127.0.0.1:8080 {"}"}]
            routes:
            {routes}
            pools: [{"{"} name: p, backends: [127.0.0.1:9000] {"}"}]
            """;
        var result = ConfigLoader.LoadText(yaml, "routes.yaml");
        Assert.True(result.Success, string.Join("\n", result.Errors));
        return new FulcrumRuntime(result.Config!).Current;
    }

    private static string? Match(RuntimeSnapshot snapshot, string host, string path, string method = "GET", HeaderDictionary? headers = null) =>
        snapshot.Routes.Match(host, path, method, new Fulcrum.Forwarding.HeaderDictionaryLookup(headers ?? new HeaderDictionary()))?.Name;

    [Fact]
    public void Match_ExactHostBeatsWildcardBeatsNoHost()
    {
        var s = Build("""
              - { name: any, pool: p }
              - { name: wild, pool: p, match: { host: '*.example.com' } }
              - { name: exact, pool: p, match: { host: api.example.com } }
            """);
        Assert.Equal("exact", Match(s, "api.example.com", "/"));
        Assert.Equal("exact", Match(s, "API.Example.COM", "/"));
        Assert.Equal("wild", Match(s, "www.example.com", "/"));
        Assert.Equal("wild", Match(s, "a.b.example.com", "/"));
        Assert.Equal("any", Match(s, "example.com", "/"));
        Assert.Equal("any", Match(s, "other.org", "/"));
    }

    [Fact]
    public void Match_LongerWildcardSuffixWins()
    {
        var s = Build("""
              - { name: short, pool: p, match: { host: '*.example.com' } }
              - { name: long, pool: p, match: { host: '*.eu.example.com' } }
            """);
        Assert.Equal("long", Match(s, "a.eu.example.com", "/"));
        Assert.Equal("short", Match(s, "a.us.example.com", "/"));
    }

    [Fact]
    public void Match_ExactPathBeatsPrefix_LongerPrefixBeatsShorter_AnyPathLast()
    {
        var s = Build("""
              - { name: none, pool: p }
              - { name: short, pool: p, match: { path_prefix: /api/ } }
              - { name: long, pool: p, match: { path_prefix: /api/v2/ } }
              - { name: exact, pool: p, match: { path: /api/v2/health } }
            """);
        Assert.Equal("exact", Match(s, "h", "/api/v2/health"));
        Assert.Equal("long", Match(s, "h", "/api/v2/healthz"));
        Assert.Equal("short", Match(s, "h", "/api/v1/x"));
        Assert.Equal("none", Match(s, "h", "/other"));
    }

    [Fact]
    public void Match_HostSpecificityComesBeforePathSpecificity()
    {
        var s = Build("""
              - { name: long-any-host, pool: p, match: { path_prefix: /api/v1/ } }
              - { name: exact-host, pool: p, match: { host: a.com, path_prefix: / } }
            """);
        Assert.Equal("exact-host", Match(s, "a.com", "/api/v1/x"));
        Assert.Equal("long-any-host", Match(s, "b.com", "/api/v1/x"));
    }

    [Fact]
    public void Match_EquallySpecific_EarlierInFileWins()
    {
        var s = Build("""
              - { name: first, pool: p, match: { path_prefix: /a } }
              - { name: second, pool: p, match: { path_prefix: /b } }
              - { name: third, pool: p, match: { path_prefix: /a } }
            """);
        Assert.Equal("first", Match(s, "h", "/a"));
    }

    [Fact]
    public void Match_MethodAndHeaderRules_SkipToTheNextRoute()
    {
        var s = Build("""
              - { name: writes, pool: p, match: { path_prefix: /api/, methods: [POST, PUT] } }
              - { name: canary, pool: p, match: { path_prefix: /api/, headers: { X-Canary: 'yes' } } }
              - { name: reads, pool: p, match: { path_prefix: /api/ } }
            """);
        Assert.Equal("writes", Match(s, "h", "/api/x", "POST"));
        Assert.Equal("reads", Match(s, "h", "/api/x", "GET"));
        Assert.Equal("canary", Match(s, "h", "/api/x", "GET", new HeaderDictionary { ["X-Canary"] = "YES" }));
        Assert.Equal("reads", Match(s, "h", "/api/x", "GET", new HeaderDictionary { ["X-Canary"] = "no" }));
    }

    [Fact]
    public void Match_HeaderWithoutValue_MeansPresent()
    {
        var s = Build("""
              - { name: debug, pool: p, match: { headers: { X-Debug: '' } } }
            """);
        Assert.Equal("debug", Match(s, "h", "/", "GET", new HeaderDictionary { ["X-Debug"] = "anything" }));
        Assert.Null(Match(s, "h", "/"));
    }

    [Fact]
    public void Match_NothingMatches_GivesNull()
    {
        var s = Build("""
              - { name: only, pool: p, match: { host: a.com, path_prefix: /x } }
            """);
        Assert.Null(Match(s, "a.com", "/y"));
        Assert.Null(Match(s, "b.com", "/x"));
    }

    [Fact]
    public void Match_TrailingDotInHost_IsIgnored()
    {
        var s = Build("""
              - { name: exact, pool: p, match: { host: a.com } }
            """);
        Assert.Equal("exact", Match(s, "a.com.", "/"));
    }
}
