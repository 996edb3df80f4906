using System.Net.Sockets;
using System.Text.RegularExpressions;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Cli;

/// <summary>
/// Bytes a client sends can cost Fulcrum a counter and a line a second, never a stack trace per
/// connection: the fulcrum binary's stderr is read after a storm of malformed HTTP/2.
/// </summary>
public sealed partial class ProtocolErrorLogTests
{
    /// <summary>The connection preface, an empty SETTINGS, then HEADERS (stream 1, END_STREAM|END_HEADERS) holding an HPACK indexed field of index 0 (RFC 7541 §6.1: an error).</summary>
    private static readonly byte[] IndexZero =
    [
        .. "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8,
        0, 0, 0, 4, 0, 0, 0, 0, 0,
        0, 0, 1, 1, 5, 0, 0, 0, 1, 0x80,
    ];

    [Fact]
    public async Task Malformed_http2_from_many_clients_is_counted_and_summarised_without_a_stack_trace()
    {
        await using var backend = await TestBackend.StartAsync("b1");
        var port = Ports.Unused();
        var adminPort = Ports.Unused();
        var path = FulcrumProcess.WriteConfig($$"""
            listeners: [{ name: grpc, address: 127.0.0.1:{{port}}, protocol: h2c }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            admin: { address: 127.0.0.1:{{adminPort}} }
            shutdown: { delay: 0s }
            """);
        try
        {
            using var process = FulcrumProcess.Start("run", "-c", path);
            await process.WaitForStderrAsync($"listener 'grpc' on http://127.0.0.1:{port}");
            for (var i = 0; i < 40; i++)
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", port);
                var stream = client.GetStream();
                await stream.WriteAsync(IndexZero);
                // Kestrel answers with SETTINGS and a GOAWAY, then hangs up.
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                var buffer = new byte[4096];
                while (await stream.ReadAsync(buffer, timeout.Token) > 0)
                {
                }
            }
            // Kestrel's own parser refuses a bare LF on the admin listener: counted too.
            using (var admin = new TcpClient())
            {
                await admin.ConnectAsync("127.0.0.1", adminPort);
                await admin.GetStream().WriteAsync("GET /metrics HTTP/1.1\nHost: x\n\n"u8.ToArray());
                var answer = new byte[4096];
                Assert.StartsWith("HTTP/1.1 400", System.Text.Encoding.ASCII.GetString(answer, 0, await admin.GetStream().ReadAsync(answer)), StringComparison.Ordinal);
            }
            using var http = new HttpClient();
            var metrics = await http.GetStringAsync($"http://127.0.0.1:{adminPort}/metrics");
            Assert.Matches(@"fulcrum_client_protocol_errors_total\{[^}]*kind=""hpack_decoding""[^}]*\} 40\b", metrics);
            Assert.Contains("listener=\"grpc\"", metrics, StringComparison.Ordinal);
            Assert.Matches(@"fulcrum_client_protocol_errors_total\{[^}]*kind=""bad_request""[^}]*\} 1\b", metrics);

            process.Signal(15);
            Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            var stderr = process.Stderr;
            Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("IndexOutOfRangeException: Index was outside the bounds of the array.    at", stderr, StringComparison.Ordinal);
            var lines = ErrorLine().Matches(stderr);
            // The storm lasts well under the few seconds it may span: a line a second at most.
            Assert.InRange(lines.Count, 1, 5);
            Assert.Contains("(hpack_decoding)", lines[0].Value, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [GeneratedRegex("client protocol error on listener 'grpc'[^\n]*")]
    private static partial Regex ErrorLine();
}
