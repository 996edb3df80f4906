using System.Net.Http.Headers;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Fulcrum.Balancing;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Fulcrum.Observability;
using Fulcrum.Routing;
using Fulcrum.Runtime;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

// The hot path's pieces, each timed alone with its allocations: route matching, each balancing
// policy's pick, and copying request and response headers. bench/micro.sh runs it; arguments go to
// BenchmarkDotNet (--filter '*Route*'); --quick runs fewer, shorter iterations.
// In process: BenchmarkDotNet 0.14.0 predates net10.0 and cannot build a child project for it.
var quick = args.Contains("--quick");
args = [.. args.Where(a => a != "--quick")];
var config = DefaultConfig.Instance
    .AddJob((quick ? Job.ShortRun : Job.Default).WithToolchain(InProcessEmitToolchain.Instance))
    .AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default)
    .WithOptions(ConfigOptions.DisableOptimizationsValidator);
BenchmarkSwitcher.FromAssembly(typeof(RouteMatch).Assembly).Run(args, config);

/// <summary>
/// A table of 40 routes: 10 exact hosts with three path rules each, a wildcard host, and
/// catch-alls. Requests hit an exact host's prefix, a wildcard host, and the catch-all.
/// </summary>
public class RouteMatch
{
    private readonly HeaderDictionary _headers = new();
    private FulcrumRuntime _runtime = null!;
    private RouteTable _routes = null!;

    [GlobalSetup]
    public void Setup()
    {
        var routes = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            routes.Add($"{{ name: h{i}-api, match: {{ host: app{i}.example.com, path_prefix: /api/ }}, pool: p }}");
            routes.Add($"{{ name: h{i}-static, match: {{ host: app{i}.example.com, path_prefix: /static/ }}, pool: p }}");
            routes.Add($"{{ name: h{i}-health, match: {{ host: app{i}.example.com, path: /healthz }}, pool: p }}");
        }
        for (var i = 0; i < 8; i++)
        {
            routes.Add($"{{ name: any-{i}, match: {{ path_prefix: /section{i}/ }}, pool: p }}");
        }
        routes.Add("{ name: wild, match: { host: '*.tenants.example.com' }, pool: p }");
        routes.Add("{ name: all, pool: p }");
        _runtime = Micro.Runtime($"routes: [{string.Join(", ", routes)}]", "round_robin", 2);
        _routes = _runtime.Current.Routes;
    }

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    [Benchmark]
    public RouteState? ExactHostPrefix() => _routes.Match("app7.example.com", "/api/v1/users/42", "GET", _headers);

    [Benchmark]
    public RouteState? WildcardHost() => _routes.Match("acme.tenants.example.com:8443", "/dashboard", "GET", _headers);

    [Benchmark]
    public RouteState? CatchAll() => _routes.Match("unknown.example.org", "/index.html", "GET", _headers);
}

/// <summary>One pick among 8 healthy backends, per policy.</summary>
public class BalancerPick
{
    private FulcrumRuntime _runtime = null!;
    private PoolState _pool = null!;

    [Params("round_robin", "least_requests", "power_of_two", "random", "first")]
    public string Policy { get; set; } = "round_robin";

    [GlobalSetup]
    public void Setup()
    {
        _runtime = Micro.Runtime("routes: [{ name: all, pool: p }]", Policy, 8);
        _pool = _runtime.Pool("p");
    }

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    [Benchmark]
    public BackendState Pick() => _pool.Policy.Pick(_pool, _pool.Available);
}

/// <summary>
/// Copying a browser-like request's headers (13, one of them hop-by-hop) into the upstream message,
/// and a typical response's headers (7) back into Kestrel's.
/// </summary>
public class HeaderCopy
{
    private readonly DefaultHttpContext _context = new();
    private readonly HttpResponseMessage _response = new();
    private readonly HeaderDictionary _clientHeaders = new();

    [GlobalSetup]
    public void Setup()
    {
        var headers = _context.Request.Headers;
        headers.Host = "app.example.com";
        headers.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36";
        headers.Accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        headers.AcceptLanguage = "en-GB,en;q=0.9";
        headers.AcceptEncoding = "gzip, deflate, br";
        headers.Connection = "keep-alive";
        headers.Cookie = "session=4f1c2a9e0b7d; theme=dark";
        headers.Referer = "https://app.example.com/dashboard";
        headers.CacheControl = "no-cache";
        headers["Sec-Fetch-Mode"] = "navigate";
        headers["Sec-Fetch-Site"] = "same-origin";
        headers["Upgrade-Insecure-Requests"] = "1";
        headers["X-Custom"] = "one";

        var response = _response.Headers;
        response.TryAddWithoutValidation("Date", "Sat, 21 Nov 2026 06:00:00 GMT");
        response.TryAddWithoutValidation("Server", "Kestrel");
        response.TryAddWithoutValidation("Cache-Control", "private, max-age=0");
        response.TryAddWithoutValidation("ETag", "\"5f3a1c\"");
        response.TryAddWithoutValidation("Vary", "Accept-Encoding");
        response.TryAddWithoutValidation("Set-Cookie", "session=4f1c2a9e0b7d; Path=/; HttpOnly");
        response.TryAddWithoutValidation("Keep-Alive", "timeout=5");
    }

    [Benchmark]
    public HttpRequestMessage RequestHeaders()
    {
        var message = new HttpRequestMessage();
        HeaderRules.CopyRequestHeaders(_context.Request, message);
        return message;
    }

    [Benchmark]
    public string? ResponseHeaders()
    {
        _clientHeaders.Clear();
        return HeaderRules.CopyResponseHeaders(_response.Headers, _clientHeaders, StringValues.Empty, dropContentLength: false);
    }
}

/// <summary>One access log line for a typical proxied request, JSON and combined.</summary>
public class AccessLogLine
{
    private readonly DefaultHttpContext _context = new();
    private readonly System.Buffers.ArrayBufferWriter<byte> _buffer = new(4096);
    private RequestRecord _record = null!;

    [GlobalSetup]
    public void Setup()
    {
        _context.Request.Method = "GET";
        _context.Request.Protocol = "HTTP/1.1";
        _context.Request.Host = new HostString("app.example.com");
        _context.Request.Path = "/api/v1/orders/42";
        _context.Request.Headers.UserAgent = "curl/8.5.0";
        _context.Connection.RemoteIpAddress = System.Net.IPAddress.Parse("192.0.2.17");
        _record = new RequestRecord("01JD5Z8K3M4N5P6Q7R8S9T0V1W")
        {
            TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Route = "api",
            Pool = "api",
            Backend = "api-1",
            Status = 200,
            ConnectMs = -1,
            TimeToFirstByteMs = 0.84213,
            BytesOut = 13,
        };
        // One try, as nearly every proxied request has: the line carries it in "attempts".
        _record.AddAttempt(new AttemptRecord("api-1", FulcrumError.None, null, 200, 0.91342));
        _record.Finish();
    }

    [Benchmark]
    public int Json()
    {
        _buffer.ResetWrittenCount();
        JsonLine.Write(_buffer, _context, _record);
        return _buffer.WrittenCount;
    }

    [Benchmark]
    public int Combined()
    {
        _buffer.ResetWrittenCount();
        CombinedLine.Write(_buffer, _context, _record);
        return _buffer.WrittenCount;
    }
}

internal static class Micro
{
    /// <summary>A runtime for one pool "p" of <paramref name="backends"/> addresses, active checks off, so all are available.</summary>
    public static FulcrumRuntime Runtime(string routes, string policy, int backends)
    {
        var addresses = string.Join(", ", Enumerable.Range(1, backends).Select(i => $"10.0.0.{i}:80"));
        var yaml = "listeners: [{ name: web, address: 127.0.0.1:8080 }]\n" + routes + "\n" + $"pools: [{{ name: p, balancing: {policy}, backends: [{addresses}] }}]";
        var result = ConfigLoader.LoadText(yaml, "micro.yaml");
        if (!result.Success)
        {
            throw new InvalidOperationException(string.Join("\n", result.Errors));
        }
        return new FulcrumRuntime(result.Config!);
    }
}
