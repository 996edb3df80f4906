using System.Net.Sockets;
using System.Text;
using Fulcrum.Tests.Integration;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Cli;

/// <summary>
/// Thousands of uploads that trickle in at once, through the fulcrum binary: its memory per
/// upload in flight stays bounded (docs/reliability.md states the bound), and every upload is
/// delivered whole once it is finished.
/// </summary>
[Collection(nameof(SerialTests))]
public sealed class SlowUploadTests
{
    private const int Uploads = 5000;
    private const int BodySize = 4096;

    /// <summary>The bound docs/reliability.md states, per upload in flight.</summary>
    private const long BoundPerUploadKiB = 64;

    [Fact]
    public async Task Five_thousand_uploads_trickling_in_at_once_keep_the_proxy_memory_bounded()
    {
        var receiving = 0;
        var whole = 0;
        await using var backend = await TestBackend.StartAsync("sink", async c =>
        {
            Interlocked.Increment(ref receiving);
            var buffer = new byte[1024];
            var total = 0;
            int n;
            while ((n = await c.Request.Body.ReadAsync(buffer)) > 0)
            {
                total += n;
            }
            if (total == BodySize)
            {
                Interlocked.Increment(ref whole);
            }
            await c.Response.WriteAsync(total.ToString(System.Globalization.CultureInfo.InvariantCulture));
        });
        var port = Ports.Unused();
        var path = FulcrumProcess.WriteConfig($$"""
            listeners: [{ name: web, address: 127.0.0.1:{{port}} }]
            routes: [{ name: r, pool: p, timeouts: { idle: 2m } }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            access_log: { enabled: false }
            shutdown: { delay: 0s }
            """);
        var clients = new List<TcpClient>(Uploads);
        try
        {
            using var process = FulcrumProcess.Start("run", "-c", path);
            await process.WaitForStderrAsync($"listener 'web' on http://127.0.0.1:{port}");
            var head = Encoding.ASCII.GetBytes($"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {BodySize}\r\n\r\n");
            var part = new byte[BodySize / 2];
            // Warm: one upload end to end, so the baseline holds what any traffic brings.
            using (var http = new HttpClient())
            {
                Assert.Equal(BodySize.ToString(System.Globalization.CultureInfo.InvariantCulture), await (await http.PostAsync($"http://127.0.0.1:{port}/up", new ByteArrayContent(new byte[BodySize]))).Content.ReadAsStringAsync());
            }
            var baseline = process.ResidentKiB;

            // Every upload sends its head and half its body, then waits: all are in flight at once.
            for (var i = 0; i < Uploads; i++)
            {
                var client = new TcpClient { NoDelay = true };
                await client.ConnectAsync("127.0.0.1", port);
                await client.GetStream().WriteAsync(head);
                await client.GetStream().WriteAsync(part);
                clients.Add(client);
            }
            await Tunnels.WebSocketTests.Eventually(() => Volatile.Read(ref receiving) >= Uploads + 1, 60_000);
            await Task.Delay(500);
            var loaded = process.ResidentKiB;
            var perUpload = (loaded - baseline) / (double)Uploads;
            Assert.True(perUpload <= BoundPerUploadKiB, $"{perUpload:0.0} KiB of Fulcrum's memory per upload in flight (from {baseline / 1024} MiB to {loaded / 1024} MiB for {Uploads})");

            // The rest of each body: every upload arrives whole.
            foreach (var client in clients)
            {
                await client.GetStream().WriteAsync(part);
            }
            await Tunnels.WebSocketTests.Eventually(() => Volatile.Read(ref whole) >= Uploads + 1, 60_000);

            process.Signal(15);
            Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
            File.Delete(path);
        }
    }
}
