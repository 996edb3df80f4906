using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Fulcrum.Tests.Integration;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Cli;

/// <summary>
/// Running out: file descriptors exhausted by a crowd of clients, and a listener's own
/// max_connections. Accepting pauses rather than spins, the limit is named once a second,
/// counted, connections already open keep working, and service returns when clients leave.
/// </summary>
[Collection(nameof(SerialTests))]
public sealed partial class ResourceLimitTests
{
    /// <summary>One request on <paramref name="stream"/>: its whole answer (chunked, sized, or until the close).</summary>
    private static async Task<string> RequestAsync(NetworkStream stream, string path = "/")
    {
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[4096];
        var text = new StringBuilder();
        while (true)
        {
            var n = await stream.ReadAsync(buffer, timeout.Token);
            if (n == 0)
            {
                return text.ToString();
            }
            text.Append(Encoding.Latin1.GetString(buffer, 0, n));
            var got = text.ToString();
            if (got.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal) || got.EndsWith("\r\n\r\nb1", StringComparison.Ordinal))
            {
                return got;
            }
        }
    }

    private static bool Served(string answer) => answer.StartsWith("HTTP/1.1 200", StringComparison.Ordinal) && answer.Contains("b1", StringComparison.Ordinal);

    [Fact]
    public async Task Two_thousand_clients_against_512_descriptors_pause_accepting_and_service_returns()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        var port = Ports.Unused();
        var adminPort = Ports.Unused();
        var path = FulcrumProcess.WriteConfig($$"""
            listeners: [{ name: web, address: 127.0.0.1:{{port}} }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            admin: { address: 127.0.0.1:{{adminPort}} }
            shutdown: { delay: 0s }
            """);
        var crowd = new List<Socket>();
        try
        {
            using var process = FulcrumProcess.StartWithOpenFileLimit(512, "run", "-c", path);
            await process.WaitForStderrAsync($"listener 'web' on http://127.0.0.1:{port}");
            // A client already connected, with a request answered (its upstream connection pooled).
            using var regular = new TcpClient();
            await regular.ConnectAsync("127.0.0.1", port);
            Assert.True(Served(await RequestAsync(regular.GetStream())));

            // The crowd: 2,000 connections, far more than 512 descriptors. Connects beyond the
            // backlog are not answered; each gets a short deadline.
            var started = Environment.TickCount64;
            for (var i = 0; i < 2000; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                using var deadline = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
                try
                {
                    await socket.ConnectAsync("127.0.0.1", port, deadline.Token);
                    crowd.Add(socket);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException { SocketErrorCode: SocketError.ConnectionRefused })
                {
                    // The backlog is full: nobody accepts, as intended. The kernel drops the SYN
                    // (the connect times out) or, on a loaded machine, was seen to refuse it.
                    socket.Dispose();
                    break;
                }
            }
            await Task.Delay(1500);
            Assert.False(process.HasExited, "fulcrum died with its descriptors exhausted:\n" + process.Stderr);

            // The connection that was already open still works.
            Assert.True(Served(await RequestAsync(regular.GetStream())));

            var seconds = (Environment.TickCount64 - started) / 1000.0;
            var lines = AcceptLine().Matches(process.Stderr);
            Assert.NotEmpty(lines);
            Assert.Contains("the process limit is 512", lines[0].Value, StringComparison.Ordinal);
            Assert.True(lines.Count <= seconds + 2, $"{lines.Count} lines in {seconds:0.0} s: more than one a second");

            // The crowd leaves; service returns by itself.
            foreach (var socket in crowd)
            {
                socket.Dispose();
            }
            crowd.Clear();
            string? answer = null;
            for (var attempt = 0; attempt < 50 && answer is null; attempt++)
            {
                try
                {
                    using var client = new TcpClient();
                    using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                    await client.ConnectAsync("127.0.0.1", port, deadline.Token);
                    var got = await RequestAsync(client.GetStream());
                    answer = Served(got) ? got : null;
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
                {
                }
                if (answer is null)
                {
                    await Task.Delay(200);
                }
            }
            Assert.NotNull(answer);
            using var http = new HttpClient();
            var metrics = await http.GetStringAsync($"http://127.0.0.1:{adminPort}/metrics");
            Assert.Matches(@"fulcrum_connections_refused_total\{listener=""web"",kind=""too_many_open_files""\} [1-9]", metrics);

            process.Signal(15);
            Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            foreach (var socket in crowd)
            {
                socket.Dispose();
            }
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Past_max_connections_a_connection_gets_503_too_many_connections_and_a_reload_changes_the_limit()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        var dir = Directory.CreateTempSubdirectory("fulcrum-limit-").FullName;
        var path = Path.Combine(dir, "fulcrum.yaml");
        string Yaml(int max) => $$"""
            listeners: [{ name: web, address: 127.0.0.1:0, max_connections: {{max}} }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            """;
        await File.WriteAllTextAsync(path, Yaml(2));
        var open = new List<TcpClient>();
        try
        {
            await using var proxy = await TestProxy.StartFileAsync(path);
            for (var i = 0; i < 2; i++)
            {
                var client = new TcpClient();
                await client.ConnectAsync(proxy.EndPoint);
                Assert.True(Served(await RequestAsync(client.GetStream())));
                open.Add(client);
            }
            using (var third = new TcpClient())
            {
                await third.ConnectAsync(proxy.EndPoint);
                var refused = await RequestAsync(third.GetStream());
                Assert.StartsWith("HTTP/1.1 503 Service Unavailable", refused, StringComparison.Ordinal);
                Assert.Contains("Fulcrum-Error: too_many_connections", refused, StringComparison.Ordinal);
                Assert.Contains("limit of 2 client connections", refused, StringComparison.Ordinal);
            }
            Assert.Contains("fulcrum_connections_refused_total{listener=\"web\",kind=\"max_connections\"} 1", proxy.Server.ScrapeMetrics(), StringComparison.Ordinal);

            // One leaves: the next is served.
            open[0].Dispose();
            open.RemoveAt(0);
            await Tunnels.WebSocketTests.Eventually(() =>
            {
                using var next = new TcpClient();
                next.Connect(proxy.EndPoint);
                return Served(RequestAsync(next.GetStream()).GetAwaiter().GetResult());
            });

            // A reload raises the limit on the listener it keeps.
            await File.WriteAllTextAsync(path, Yaml(3));
            Assert.True((await proxy.Server.ReloadAsync("test")).Success);
            using var another = new TcpClient();
            await another.ConnectAsync(proxy.EndPoint);
            var extra = new TcpClient();
            await extra.ConnectAsync(proxy.EndPoint);
            open.Add(extra);
            Assert.True(Served(await RequestAsync(extra.GetStream())));
        }
        finally
        {
            foreach (var client in open)
            {
                client.Dispose();
            }
            Directory.Delete(dir, recursive: true);
        }
    }

    [GeneratedRegex("connection not served on listener 'web' \\(too_many_open_files\\)[^\n]*")]
    private static partial Regex AcceptLine();
}
