using Fulcrum.Tests.Integration;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Cli;

/// <summary>
/// A 1 GiB body to a client slower than its backend, through the fulcrum binary: its resident
/// memory stays flat (the backend is held back, nothing buffers). Measured on the process itself,
/// since in-process the backend's and the client's own garbage would be counted too.
/// </summary>
[Collection(nameof(SerialTests))]
public sealed class LargeBodyTests
{
    [Fact]
    public async Task A_1_GiB_download_to_a_slow_client_keeps_the_proxy_memory_flat()
    {
        const long size = 1L << 30;
        await using var backend = await TestBackend.StartAsync("source", async c =>
        {
            c.Response.ContentLength = c.Request.Path == "/warm" ? 1 << 20 : size;
            var chunk = new byte[64 * 1024];
            for (long sent = 0; sent < c.Response.ContentLength; sent += chunk.Length)
            {
                await c.Response.Body.WriteAsync(chunk, c.RequestAborted);
            }
        });
        var port = Ports.Unused();
        var path = FulcrumProcess.WriteConfig($$"""
            listeners: [{ name: web, address: 127.0.0.1:{{port}} }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [{{backend.Address}}] }]
            shutdown: { delay: 0s }
            """);
        try
        {
            using var process = FulcrumProcess.Start("run", "-c", path);
            await process.WaitForStderrAsync($"listener 'web' on http://127.0.0.1:{port}");
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            for (var i = 0; i < 3; i++)
            {
                Assert.Equal(1 << 20, (await client.GetByteArrayAsync("/warm")).Length);
            }
            var baseline = process.ResidentKiB;
            var peak = baseline;

            using var response = await client.GetAsync("/big", HttpCompletionOption.ResponseHeadersRead);
            await using var body = await response.Content.ReadAsStreamAsync();
            var buffer = new byte[16 * 1024];
            long total = 0;
            int n;
            var nextPause = 4L << 20;
            while ((n = await body.ReadAsync(buffer)) > 0)
            {
                total += n;
                if (total >= nextPause)
                {
                    // Slower than the backend: Fulcrum must hold the backend back, not buffer.
                    await Task.Delay(2);
                    nextPause += 4L << 20;
                    peak = Math.Max(peak, process.ResidentKiB);
                }
            }
            Assert.Equal(size, total);
            Assert.True(peak - baseline < 32 * 1024, $"fulcrum's resident memory grew by {(peak - baseline) / 1024} MiB (from {baseline / 1024} MiB) while relaying 1 GiB");

            process.Signal(15);
            Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
