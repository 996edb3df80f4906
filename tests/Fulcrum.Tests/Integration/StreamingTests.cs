using System.Net;
using System.Security.Cryptography;
using System.Text;
using Fulcrum.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Integration;

/// <summary>Bodies stream through in both directions: byte-identical, in flat memory, and as they arrive.</summary>
[Collection(nameof(SerialTests))]
public class StreamingTests
{
    [Theory]
    [InlineData(1 << 20)]
    [InlineData(100 << 20)]
    public async Task Upload_ArrivesByteIdentical_InFlatMemory(int size)
    {
        await using var backend = await TestBackend.StartAsync("sink", async c =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            long total = 0;
            int n;
            while ((n = await c.Request.Body.ReadAsync(buffer)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                total += n;
            }
            await c.Response.WriteAsync($"{total}:{Convert.ToHexString(sha.GetHashAndReset())}");
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);

        using var memory = new MemoryWatch();
        using var content = new StreamContent(new PatternStream(size), 64 * 1024);
        content.Headers.ContentLength = size;
        using var response = await proxy.Client.PostAsync("/upload", content);
        var expected = $"{size}:{PatternStream.Sha256Hex(size)}";
        Assert.Equal(expected, await response.Content.ReadAsStringAsync());
        memory.AssertGrowthBelow(48 << 20);
    }

    [Theory]
    [InlineData(1 << 20, true)]
    [InlineData(100 << 20, true)]
    [InlineData(100 << 20, false)]
    public async Task Download_ArrivesByteIdentical_InFlatMemory(int size, bool contentLength)
    {
        await using var backend = await TestBackend.StartAsync("source", async c =>
        {
            if (contentLength)
            {
                c.Response.ContentLength = size;
            }
            await new PatternStream(size).CopyToAsync(c.Response.Body, 64 * 1024);
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);

        using var memory = new MemoryWatch();
        using var response = await proxy.Client.GetAsync("/download", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(contentLength ? size : null, response.Content.Headers.ContentLength);
        await using var body = await response.Content.ReadAsStreamAsync();
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long total = 0;
        int n;
        while ((n = await body.ReadAsync(buffer)) > 0)
        {
            sha.AppendData(buffer, 0, n);
            total += n;
        }
        Assert.Equal(size, total);
        Assert.Equal(PatternStream.Sha256Hex(size), Convert.ToHexString(sha.GetHashAndReset()));
        memory.AssertGrowthBelow(48 << 20);
        var line = await proxy.Log.WaitForAsync(l => l.GetProperty("path").GetString() == "/download");
        Assert.Equal(size, line.GetProperty("bytes_out").GetInt64());
    }

    [Fact]
    public async Task ServerSentEvents_ArriveBeforeTheStreamEnds()
    {
        var secondMayGo = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync("sse", async c =>
        {
            c.Response.ContentType = "text/event-stream";
            await c.Response.WriteAsync("data: first\n\n");
            await c.Response.Body.FlushAsync();
            // The backend holds the stream open until the client has seen the first event:
            // if Fulcrum buffered, the test would wait here until it timed out.
            await secondMayGo.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await c.Response.WriteAsync("data: second\n\n");
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var response = await proxy.Client.GetAsync("/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        await using var stream = await response.Content.ReadAsStreamAsync();
        using var reader = new StreamReader(stream, Encoding.UTF8);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal("data: first", await reader.ReadLineAsync(timeout.Token));
        secondMayGo.SetResult();
        Assert.Equal("", await reader.ReadLineAsync(timeout.Token));
        Assert.Equal("data: second", await reader.ReadLineAsync(timeout.Token));
    }

    [Fact]
    public async Task StreamingResponse_HeadersArriveBeforeAnyBody()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync("poll", async c =>
        {
            c.Response.Headers["X-Started"] = "yes";
            await c.Response.StartAsync();
            await c.Response.BodyWriter.FlushAsync();
            await release.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await c.Response.WriteAsync("done");
        });
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        using var response = await proxy.Client.GetAsync("/poll", HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        Assert.Equal("yes", response.Headers.GetValues("X-Started").Single());
        release.SetResult();
        Assert.Equal("done", await response.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}

/// <summary>
/// Tests that measure memory or time run alone, after the parallel ones, so that other tests do
/// not move the needle on a two-core machine.
/// </summary>
[CollectionDefinition(nameof(SerialTests), DisableParallelization = true)]
public sealed class SerialTests;

/// <summary>Samples the managed heap while a transfer runs and checks how far it rose.</summary>
public sealed class MemoryWatch : IDisposable
{
    private readonly long _baseline;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _sampler;
    private long _peak;

    public MemoryWatch()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        _baseline = GC.GetTotalMemory(forceFullCollection: true);
        _peak = _baseline;
        _sampler = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                var now = GC.GetTotalMemory(false);
                if (now > Volatile.Read(ref _peak))
                {
                    Volatile.Write(ref _peak, now);
                }
                await Task.Delay(5);
            }
        });
    }

    /// <summary>A 100 MiB body buffered anywhere on its way would push the heap past this.</summary>
    public void AssertGrowthBelow(long bytes)
    {
        _stop.Cancel();
        _sampler.Wait();
        var growth = Volatile.Read(ref _peak) - _baseline;
        Assert.True(growth < bytes, $"managed heap grew by {growth >> 20} MiB during the transfer");
    }

    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
    }
}
