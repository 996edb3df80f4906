using Fulcrum.Configuration;

namespace Fulcrum.Tests.Configuration;

public class ConfigLoaderTests
{
    private const string Valid = """
        listeners:
          - name: web
            address: 0.0.0.0:8080
        routes:
          - name: chat
            match: { host: chat.example.com, path_prefix: /ws/, methods: [get, POST], headers: { X-Env: prod } }
            pool: chat
            timeouts: { idle: 1h }
        pools:
          - name: chat
            balancing: least_requests
            timeouts: { connect: 2s, response: 30s }
            host_header: backend
            backends:
              - address: 10.0.1.10:8080
              - address: 10.0.1.11:8080
                weight: 3
                name: big
              - 10.0.1.12:8080
        admin:
          address: 127.0.0.1:9901
        access_log:
          path: /var/log/fulcrum/access.log
        """;

    [Fact]
    public void LoadText_ValidFile_BindsEveryKey()
    {
        var result = ConfigLoader.LoadText(Valid, "fulcrum.yaml");
        Assert.True(result.Success, string.Join("\n", result.Errors));
        var config = result.Config!;

        var listener = Assert.Single(config.Listeners);
        Assert.Equal(new HostPort("0.0.0.0", 8080), listener.Address);

        var route = Assert.Single(config.Routes);
        Assert.Equal("chat.example.com", route.Match.Host);
        Assert.Equal("/ws/", route.Match.PathPrefix);
        Assert.Equal(["GET", "POST"], route.Match.Methods);
        Assert.Equal(new HeaderMatchConfig("X-Env", "prod"), Assert.Single(route.Match.Headers));
        Assert.Equal(TimeSpan.FromHours(1), route.Timeouts.Idle);
        Assert.Null(route.Timeouts.Connect);

        var pool = Assert.Single(config.Pools);
        Assert.Equal("least_requests", pool.Balancing);
        Assert.Equal(HostHeaderMode.Backend, pool.HostHeader);
        Assert.Equal(TimeSpan.FromSeconds(2), pool.Timeouts.Connect);
        Assert.Equal(3, pool.Backends.Count);
        Assert.Equal(1, pool.Backends[0].Weight);
        Assert.Equal(3, pool.Backends[1].Weight);
        Assert.Equal("big", pool.Backends[1].Name);
        Assert.Equal("10.0.1.12:8080", pool.Backends[2].Address);

        Assert.Equal(new HostPort("127.0.0.1", 9901), config.Admin!.Address);
        Assert.Equal("/var/log/fulcrum/access.log", config.AccessLog.Path);
    }

    [Fact]
    public void LoadText_SameTextTwice_GivesEqualConfigs()
    {
        var a = ConfigLoader.LoadText(Valid, "a.yaml").Config;
        var b = ConfigLoader.LoadText(Valid, "b.yaml").Config;
        Assert.Equal(a, b);
    }

    [Fact]
    public void LoadText_DefaultsApply_WhenKeysAreLeftOut()
    {
        var result = ConfigLoader.LoadText("""
            listeners: [{ name: web, address: 127.0.0.1:8080 }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9000] }]
            """, "f.yaml");
        Assert.True(result.Success, string.Join("\n", result.Errors));
        var pool = result.Config!.Pools[0];
        Assert.Equal("power_of_two", pool.Balancing);
        Assert.Equal(HostHeaderMode.Preserve, pool.HostHeader);
        Assert.True(result.Config.AccessLog.Enabled);
        Assert.Equal("stdout", result.Config.AccessLog.Path);
        Assert.Null(result.Config.Admin);
    }

    [Fact]
    public void LoadText_ManyErrors_ReportsEveryOneWithLineAndColumn()
    {
        const string yaml = """
            listeners:
              - name: web
                address: 127.0.0.1
            routes:
              - name: api
                pool: apii
                timeouts: { response: 30 }
              - name: api
                pool: api
            pools:
              - name: api
                balacing: round_robin
                backends:
                  - address: 10.0.0.1:8080
                    weight: 0
                  - address: 10.0.0.1:8080
              - name: empty
                balancing: fastest
            """;
        var result = ConfigLoader.LoadText(yaml, "bad.yaml");
        Assert.False(result.Success);
        var lines = result.Errors.Select(e => e.ToString()).ToList();
        Assert.Contains("bad.yaml:3:14: listeners[0].address: '127.0.0.1' has no port; write it as host:port, like 127.0.0.1:8080", lines);
        Assert.Contains(lines, l => l.StartsWith("bad.yaml:6:11: route 'api' sends traffic to pool 'apii', which does not exist; did you mean 'api'?", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("bad.yaml:7:27: routes[0].timeouts.response: '30' has no unit", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("bad.yaml:8:11: duplicate route name 'api' (first defined on line 5)", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("bad.yaml:12:5: unknown key 'balacing' in pools[0]; did you mean 'balancing'?", StringComparison.Ordinal));
        Assert.Contains("bad.yaml:15:17: pools[0].backends[0].weight: 0 is out of range (1 to 1000)", lines);
        Assert.Contains(lines, l => l.StartsWith("bad.yaml:16:18: pool 'api' lists backend 10.0.0.1:8080 twice", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("bad.yaml:18:16: pools[1].balancing: unknown value 'fastest'", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("bad.yaml:17:5: pool 'empty' has no backends", StringComparison.Ordinal));
        Assert.Equal(9, result.Errors.Count);
        // Sorted by position, as a compiler would list them.
        Assert.Equal(result.Errors.OrderBy(e => e.Line).ThenBy(e => e.Column), result.Errors);
    }

    [Fact]
    public void LoadText_YamlSyntaxError_GivesPosition()
    {
        var result = ConfigLoader.LoadText("listeners:\n  - name: web\n    address: [127.0.0.1:80\n", "syntax.yaml");
        var error = Assert.Single(result.Errors);
        Assert.Equal("syntax.yaml", error.File);
        Assert.True(error.Line >= 3, error.ToString());
        Assert.StartsWith("YAML syntax:", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadText_EmptyFile_SaysWhatIsNeeded()
    {
        var error = Assert.Single(ConfigLoader.LoadText("", "empty.yaml").Errors);
        Assert.Contains("empty", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadText_DuplicateKey_IsReported()
    {
        var result = ConfigLoader.LoadText("listeners: []\nlisteners: []\n", "dup.yaml");
        Assert.False(result.Success);
        Assert.Contains(result.Errors, e => e.Message.Contains("Duplicate key", StringComparison.OrdinalIgnoreCase));
    }

    [Theory]
    [InlineData("match: { host: 'http://x.com' }", "is not a host name")]
    [InlineData("match: { host: 'a.*.com' }", "is not a host name")]
    [InlineData("match: { path_prefix: api }", "must start with '/'")]
    [InlineData("match: { path: /a, path_prefix: /b }", "either path (exact) or path_prefix")]
    [InlineData("match: { methods: ['GE T'] }", "is not an HTTP method")]
    [InlineData("match: { headers: [a, b] }", "must be a mapping of header names")]
    [InlineData("match: { hots: a.com }", "unknown key 'hots' in routes[0].match; did you mean 'host'?")]
    [InlineData("timeouts: { idle: 0s }", "must be longer than 0s")]
    public void LoadText_BadRoute_SaysWhy(string routeLine, string expected)
    {
        var yaml = $"""
            listeners: [{"{"} name: web, address: 127.0.0.1:8080 {"}"}]
            routes:
              - name: r
                pool: p
                {routeLine}
            pools: [{"{"} name: p, backends: [127.0.0.1:9000] {"}"}]
            """;
        var result = ConfigLoader.LoadText(yaml, "r.yaml");
        Assert.False(result.Success);
        Assert.Contains(result.Errors, e => e.Message.Contains(expected, StringComparison.Ordinal));
        Assert.All(result.Errors, e => Assert.Equal(5, e.Line));
    }

    [Fact]
    public void LoadText_NoListenersNoRoutes_SaysSo()
    {
        var result = ConfigLoader.LoadText("pools: [{ name: p, backends: [127.0.0.1:9000] }]", "n.yaml");
        Assert.Contains(result.Errors, e => e.Message.StartsWith("no listeners", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.Message.StartsWith("no routes", StringComparison.Ordinal));
    }

    [Fact]
    public void LoadText_ListenerAddressUsedTwice_IsAnError()
    {
        var result = ConfigLoader.LoadText("""
            listeners:
              - { name: a, address: 127.0.0.1:8080 }
              - { name: b, address: 127.0.0.1:8080 }
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9000] }]
            admin: { address: 127.0.0.1:8080 }
            """, "l.yaml");
        Assert.Contains(result.Errors, e => e.Line == 3 && e.Message.Contains("overlaps listener 'a'", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.Line == 6 && e.Message.Contains("admin.address", StringComparison.Ordinal));
    }

    [Fact]
    public void LoadFile_MissingFile_SaysItCannotRead()
    {
        var result = ConfigLoader.LoadFile("/nonexistent/fulcrum.yaml");
        var error = Assert.Single(result.Errors);
        Assert.Equal("/nonexistent/fulcrum.yaml:1:1: cannot read the file: " + error.Message["cannot read the file: ".Length..], error.ToString());
    }

    [Fact]
    public void DesignExample_WithoutHealth_IsValid()
    {
        // The example in DESIGN.md is a contract for its key names; health has its own issue.
        var yaml = """
            listeners:
              - name: web
                address: 0.0.0.0:8080
            routes:
              - name: chat
                match: { host: chat.example.com, path_prefix: /ws/ }
                pool: chat
                timeouts: { idle: 1h }
            pools:
              - name: chat
                balancing: least_requests
                backends:
                  - address: 10.0.1.10:8080
                  - address: 10.0.1.11:8080
            admin:
              address: 127.0.0.1:9901
            """;
        Assert.True(ConfigLoader.LoadText(yaml, "design.yaml").Success);
    }

    [Theory]
    [InlineData("idle: 60d", "too long; the longest duration is 24d")]
    [InlineData("idle: 99999999999d", "too long")]
    [InlineData("idle: 1e400s", "unknown unit 'e'")]
    public void LoadText_DurationBeyondWhatTimersCanWait_IsRefused(string timeout, string expected)
    {
        var result = ConfigLoader.LoadText($$"""
            listeners: [{ name: web, address: 127.0.0.1:8080 }]
            routes: [{ name: r, pool: p, timeouts: { {{timeout}} } }]
            pools: [{ name: p, backends: [127.0.0.1:9000] }]
            """, "d.yaml");
        Assert.Contains(result.Errors, e => e.Message.Contains(expected, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("backends: ['*:8080']")]
    [InlineData("backends: [{ address: '*:8080' }]")]
    public void LoadText_WildcardBackend_IsRefused(string backends)
    {
        var result = ConfigLoader.LoadText($$"""
            listeners: [{ name: web, address: 127.0.0.1:8080 }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, {{backends}} }]
            """, "w.yaml");
        Assert.Contains(result.Errors, e => e.Message.Contains("'*' means every interface and is for listeners only", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("*:8080", "127.0.0.1:8080")]
    [InlineData("0.0.0.0:8080", "localhost:8080")]
    [InlineData("localhost:8080", "127.0.0.1:8080")]
    public void LoadText_OverlappingListenerAddresses_AreRefused(string a, string b)
    {
        var result = ConfigLoader.LoadText($$"""
            listeners:
              - { name: a, address: '{{a}}' }
              - { name: b, address: '{{b}}' }
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9000] }]
            """, "o.yaml");
        Assert.Contains(result.Errors, e => e.Message.Contains("overlaps listener 'a'", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("listeners: &a [1]\nroutes: *a\npools: *a\n")]
    [InlineData("? [a, b]\n: c\n")]
    [InlineData("- just\n- a list\n")]
    [InlineData("listeners: [{ name: web, address: 127.0.0.1:8080, address: 127.0.0.1:8081 }]\n")]
    public void LoadText_OddYaml_GivesErrorsNotExceptions(string yaml)
    {
        var result = ConfigLoader.LoadText(yaml.Replace("\\n", "\n", StringComparison.Ordinal), "odd.yaml");
        Assert.False(result.Success);
        Assert.NotEmpty(result.Errors);
    }
}
