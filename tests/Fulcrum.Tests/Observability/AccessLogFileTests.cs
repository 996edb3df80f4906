using System.Text.Json;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Observability;

public class AccessLogFileTests
{
    [Fact]
    public async Task Create_FilePath_AppendsOneJsonLinePerRequest()
    {
        var path = Path.Combine(Path.GetTempPath(), $"fulcrum-access-{Guid.NewGuid():N}.log");
        await File.WriteAllTextAsync(path, "an earlier line\n");
        try
        {
            var log = AccessLog.Create(new AccessLogConfig(true, path, AccessLogConfig.JsonFormat));
            for (var i = 0; i < 3; i++)
            {
                var context = new DefaultHttpContext();
                context.Request.Method = "GET";
                context.Request.Path = $"/item/{i}";
                log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord($"id-{i}") { Status = 200, Route = "r", Pool = "p" });
            }
            await log.DisposeAsync();

            var lines = await File.ReadAllLinesAsync(path);
            Assert.Equal("an earlier line", lines[0]);
            Assert.Equal(4, lines.Length);
            for (var i = 0; i < 3; i++)
            {
                using var json = JsonDocument.Parse(lines[i + 1]);
                Assert.Equal($"id-{i}", json.RootElement.GetProperty("request_id").GetString());
                Assert.Equal($"/item/{i}", json.RootElement.GetProperty("path").GetString());
            }
            Assert.Equal(0, log.Dropped);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Disabled_WritesNothing()
    {
        var log = AccessLog.Create(new AccessLogConfig(false, "/nonexistent/dir/access.log", AccessLogConfig.JsonFormat));
        Assert.False(log.Enabled);
        log.Write(new Fulcrum.Forwarding.KestrelExchange(new DefaultHttpContext()), new RequestRecord("x"));
        await log.DisposeAsync();
    }
}

public class AccessLogFormatTests
{
    [Fact]
    public async Task CombinedFormat_IsApachesLineThenFulcrumsFields()
    {
        await using var backend = await Fulcrum.Tests.TestSupport.TestBackend.StartAsync("b");
        var sink = new Fulcrum.Tests.TestSupport.LogSink();
        var config = ConfigLoader.LoadText($$"""
            listeners: [{ name: web, address: 127.0.0.1:0 }]
            routes: [{ name: main, pool: main }]
            pools: [{ name: main, backends: [{ address: {{backend.Address}}, name: b1 }] }]
            """, "c.yaml").Config!;
        await using var server = await Fulcrum.Hosting.FulcrumServer.StartAsync(config, new Fulcrum.Hosting.FulcrumServerOptions { AccessLog = AccessLog.ToStream(sink, AccessLogConfig.CombinedFormat) });
        using var client = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{server.ListenerEndPoint("web")}/v1/orders?secret=1");
        request.Headers.TryAddWithoutValidation("User-Agent", "tester \"quoted\"/1.0");
        request.Headers.TryAddWithoutValidation("X-Request-Id", "rid-7");
        (await client.SendAsync(request)).Dispose();
        var deadline = Environment.TickCount64 + 5000;
        while (!sink.Text.Contains('\n', StringComparison.Ordinal) && Environment.TickCount64 < deadline)
        {
            await Task.Delay(20);
        }
        var line = sink.Text.TrimEnd('\n');
        Assert.Matches(@"^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] ""GET /v1/orders HTTP/1\.1"" 200 1 ""-"" ""tester \\x22quoted\\x22/1\.0"" request_id=rid-7 route=main pool=main backend=b1 error=- duration_ms=[\d.]+ upstream_connect_ms=[\d.]+ ttfb_ms=[\d.]+ bytes_in=0 attempts=b1:ok$", line);
        Assert.DoesNotContain("secret", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Writer_BlockedPastCapacity_DropsLines_AndCountsThemInTheMetric()
    {
        var output = new StalledStream();
        var log = AccessLog.ToStream(output);
        var config = ConfigLoader.LoadText("""
            listeners: [{ name: web, address: 127.0.0.1:0 }]
            routes: [{ name: r, pool: p }]
            pools: [{ name: p, backends: [127.0.0.1:9] }]
            """, "m.yaml").Config!;
        using var runtime = new Fulcrum.Runtime.FulcrumRuntime(config);
        using var metrics = new FulcrumMetrics(runtime, "test", log);
        using var exporter = new PrometheusExporter(metrics.Meter);
        var context = new DefaultHttpContext();
        // The writer takes the first line and stalls on it; this thread's pending buffer then
        // fills to its limit and the rest are dropped, counted, never waited for.
        log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("first"));
        await output.Entered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 0; i < 20_000; i++)
        {
            log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("r" + i));
        }
        var dropped = log.Dropped;
        Assert.InRange(dropped, 1, 20_000 - (AccessLog.PendingLimit / 1024)); // lines are well under 1 KiB
        Assert.Contains($"fulcrum_access_log_dropped_total {dropped}", exporter.Scrape().Split('\n'));
        output.Release.SetResult();
        await log.DisposeAsync();
        // Every line is either written whole or counted as dropped.
        var written = output.ToArray().Count(b => b == (byte)'\n');
        Assert.Equal(20_001, written + dropped);
        Assert.Equal(20_001 - dropped, System.Text.Encoding.UTF8.GetString(output.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l.StartsWith('{') && l.EndsWith('}')));
    }

    [Fact]
    public async Task Stopping_does_not_wait_for_ever_on_an_output_that_takes_nothing()
    {
        // A pipe whose reader is stuck: the writer blocks in its first write and never returns.
        var output = new StalledStream();
        var log = AccessLog.ToStream(output);
        log.DrainLimit = TimeSpan.FromMilliseconds(200);
        var context = new DefaultHttpContext();
        log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("stuck in the write"));
        await output.Entered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 0; i < 10; i++)
        {
            log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("pending " + i));
        }
        try
        {
            // Stops within its limit rather than hanging the process's exit.
            await log.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(11, log.Dropped);
        }
        finally
        {
            output.Release.SetResult(); // let the writer thread end
        }
    }

    [Fact]
    public async Task Lines_from_many_threads_are_all_written_whole()
    {
        var sink = new Fulcrum.Tests.TestSupport.LogSink();
        long dropped;
        await using (var log = AccessLog.ToStream(sink))
        {
            await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(() =>
            {
                var context = new DefaultHttpContext();
                for (var i = 0; i < 2_000; i++)
                {
                    log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord($"t{t}-{i}"));
                }
            })));
            dropped = log.Dropped;
        }
        // Whole lines only, each once; a line not written is one counted as dropped (a burst this
        // fast can outrun the writer on a loaded machine).
        var ids = sink.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("request_id").GetString())
            .ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Equal(16_000, ids.Count + dropped);
    }

    [Fact]
    public async Task A_line_written_after_the_log_is_disposed_is_counted_as_dropped_not_thrown()
    {
        var sink = new Fulcrum.Tests.TestSupport.LogSink();
        var log = AccessLog.ToStream(sink);
        var context = new DefaultHttpContext();
        log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("before"));
        await log.DisposeAsync();
        log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("after"));
        await Task.Run(() => log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("after, from another thread")));
        Assert.Equal(2, log.Dropped);
        Assert.Contains("\"before\"", sink.Text, StringComparison.Ordinal);
        Assert.DoesNotContain("after", sink.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_line_on_an_idle_log_is_written_promptly_and_so_is_the_next_after_a_quiet_spell()
    {
        var sink = new Fulcrum.Tests.TestSupport.LogSink();
        await using var log = AccessLog.ToStream(sink);
        var context = new DefaultHttpContext();
        log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("one"));
        await Until(() => sink.Text.Contains("\"one\"", StringComparison.Ordinal));
        // Quiet long enough for the writer to go to sleep waiting for a line.
        await Task.Delay(300);
        log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("two"));
        await Until(() => sink.Text.Contains("\"two\"", StringComparison.Ordinal));

        static async Task Until(Func<bool> done)
        {
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (!done())
            {
                Assert.True(DateTime.UtcNow < deadline, "the line was not written within 5 s");
                await Task.Delay(5);
            }
        }
    }

    /// <summary>An output whose first write blocks until released.</summary>
    private sealed class StalledStream : MemoryStream
    {
        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        // The log's writer is a thread of its own and writes synchronously: block it there.
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            Entered.TrySetResult();
            Release.Task.Wait();
            base.Write(buffer);
        }
    }

    [Fact]
    public void CombinedFormat_EscapesEachUtf8ByteBeyondAscii_AsNginxDoes()
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/café/中";
        context.Request.Protocol = "HTTP/1.1";
        context.Request.Headers.UserAgent = "plain/1.0";
        var record = new RequestRecord("rid") { Status = 200 };
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        CombinedLine.Write(buffer, new Fulcrum.Forwarding.KestrelExchange(context), record);
        var line = System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        Assert.Contains(@"""GET /caf\xC3\xA9/\xE4\xB8\xAD HTTP/1.1"" 200 - ""-"" ""plain/1.0""", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigusr1_ReopensTheFile_SoLogrotateCanMoveIt()
    {
        await using var backend = await Fulcrum.Tests.TestSupport.TestBackend.StartAsync("b");
        var dir = Directory.CreateTempSubdirectory("fulcrum-rotate-");
        try
        {
            var log = Path.Combine(dir.FullName, "access.log");
            var port = Fulcrum.Tests.TestSupport.Ports.Unused();
            var config = Path.Combine(dir.FullName, "fulcrum.yaml");
            await File.WriteAllTextAsync(config, $$"""
                listeners: [{ name: web, address: 127.0.0.1:{{port}} }]
                routes: [{ name: main, pool: main }]
                pools: [{ name: main, backends: [{{backend.Address}}] }]
                access_log: { path: {{log}} }
                shutdown: { delay: 0s }
                """);
            using var process = Fulcrum.Tests.TestSupport.FulcrumProcess.Start("run", "-c", config);
            await process.WaitForStderrAsync("listener 'web' on");
            using var client = new HttpClient();
            (await client.GetAsync($"http://127.0.0.1:{port}/before")).Dispose();
            await WaitForFileAsync(log, "/before");

            File.Move(log, log + ".1"); // what logrotate does
            process.Signal(10); // SIGUSR1
            await Task.Delay(300);
            (await client.GetAsync($"http://127.0.0.1:{port}/after")).Dispose();
            await WaitForFileAsync(log, "/after");
            Assert.DoesNotContain("/after", await File.ReadAllTextAsync(log + ".1"), StringComparison.Ordinal);
            Assert.DoesNotContain("/before", await File.ReadAllTextAsync(log), StringComparison.Ordinal);

            process.Signal(15);
            Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static async Task WaitForFileAsync(string path, string text)
    {
        var deadline = Environment.TickCount64 + 5000;
        while (!(File.Exists(path) && (await File.ReadAllTextAsync(path)).Contains(text, StringComparison.Ordinal)))
        {
            Assert.True(Environment.TickCount64 < deadline, $"{path} never held {text}");
            await Task.Delay(50);
        }
    }
}

public class AccessLogNumberTests
{
    [Theory]
    [InlineData(1.6854, "1.685")]
    [InlineData(1.6855, "1.686")]
    [InlineData(2, "2")]
    [InlineData(1.5, "1.5")]
    [InlineData(0.0005, "0.001")]
    [InlineData(0.0004, "0")]
    [InlineData(12345.0707, "12345.071")]
    // Either side of ten, where the whole part stops being one digit written directly.
    [InlineData(9.99949, "9.999")]
    [InlineData(9.9996, "10")]
    [InlineData(10.25, "10.25")]
    public void Milliseconds_are_written_with_at_most_three_decimals(double ms, string expected)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        var record = new RequestRecord("id") { ConnectMs = ms, TimeToFirstByteMs = -1 };
        JsonLine.Write(buffer, new Fulcrum.Forwarding.KestrelExchange(new DefaultHttpContext()), record);
        var line = System.Text.Json.JsonDocument.Parse(buffer.WrittenMemory).RootElement;
        Assert.Equal(expected, line.GetProperty("upstream_connect_ms").GetRawText());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, line.GetProperty("ttfb_ms").ValueKind);
    }

    [Fact]
    public async Task The_timestamp_and_other_text_are_written_without_needless_escapes_but_control_characters_are_escaped()
    {
        var sink = new Fulcrum.Tests.TestSupport.LogSink();
        await using (var log = AccessLog.ToStream(sink))
        {
            var context = new DefaultHttpContext();
            context.Request.Path = "/a+b/<x>&\u00e9\n";
            log.Write(new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("id"));
        }
        var text = sink.Text;
        Assert.Matches("\"time\":\"[0-9T:.-]+\\+00:00\"", text);
        Assert.Contains("\"path\":\"/a+b/<x>&\u00e9\\n\"", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("1.2.3.4")]
    [InlineData("10.0.100.9")]
    [InlineData("192.168.10.255")]
    [InlineData("255.255.255.255")]
    [InlineData("::ffff:127.0.0.1")]
    [InlineData("2001:db8::1")]
    [InlineData(null)]
    public void The_client_address_is_written_as_IPAddress_formats_it(string? address)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/";
        context.Connection.RemoteIpAddress = address is null ? null : System.Net.IPAddress.Parse(address);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        JsonLine.Write(buffer, new Fulcrum.Forwarding.KestrelExchange(context), new RequestRecord("id"));

        var client = System.Text.Json.JsonDocument.Parse(buffer.WrittenMemory).RootElement.GetProperty("client");
        Assert.Equal(context.Connection.RemoteIpAddress?.ToString(), client.GetString());
    }

    [Theory]
    [InlineData("/plain/path")]
    [InlineData("/quote\"and\\backslash")]
    [InlineData("/ctl\u0001\t\r\n\u001f\u007f")]
    [InlineData("/caf\u00e9/\u65e5\u672c/\ud83d\ude00")]
    [InlineData("/lone\ud800surrogate")]
    [InlineData("")]
    public void Every_text_field_reads_back_as_written_and_the_line_stays_one_line(string text)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "P" + text;
        context.Request.Path = text;
        context.Request.Headers.Host = "h" + text;
        context.Request.Protocol = "HTTP/1.1";
        context.Connection.RemoteIpAddress = System.Net.IPAddress.IPv6Loopback;
        var record = new RequestRecord("id" + text) { Route = "r" + text, Pool = "p", Backend = "b" + text, Status = 502, Error = Fulcrum.Forwarding.FulcrumError.ConnectRefused, Tunnelled = true, TunnelClosedBy = "tunnel_idle" };
        record.AddAttempt(new AttemptRecord("b" + text, Fulcrum.Forwarding.FulcrumError.ConnectRefused, "refused", 0, 1.25));
        record.AddAttempt(new AttemptRecord("c", Fulcrum.Forwarding.FulcrumError.None, null, 200, 0));
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        JsonLine.Write(buffer, new Fulcrum.Forwarding.KestrelExchange(context), record);

        Assert.DoesNotContain((byte)'\n', buffer.WrittenSpan.ToArray());
        var line = System.Text.Json.JsonDocument.Parse(buffer.WrittenMemory).RootElement;
        // A lone surrogate has no UTF-8 form: it is logged as U+FFFD rather than losing the line.
        var expected = text.Replace("\ud800", "\ufffd", StringComparison.Ordinal);
        Assert.Equal("id" + expected, line.GetProperty("request_id").GetString());
        Assert.Equal("P" + expected, line.GetProperty("method").GetString());
        Assert.Equal(expected, line.GetProperty("path").GetString() ?? "");
        Assert.Equal("h" + expected, line.GetProperty("host").GetString());
        Assert.Equal("r" + expected, line.GetProperty("route").GetString());
        Assert.Equal("b" + expected, line.GetProperty("backend").GetString());
        Assert.Equal("::1", line.GetProperty("client").GetString());
        Assert.Equal("connect_refused", line.GetProperty("error").GetString());
        Assert.Equal(502, line.GetProperty("status").GetInt32());
        Assert.True(line.GetProperty("tunnel").GetBoolean());
        Assert.Equal("tunnel_idle", line.GetProperty("tunnel_closed_by").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.String, line.GetProperty("trace_id").ValueKind);
        var attempts = line.GetProperty("attempts").EnumerateArray().ToArray();
        Assert.Equal(2, attempts.Length);
        Assert.Equal("b" + expected, attempts[0].GetProperty("backend").GetString());
        Assert.Equal("connect_refused", attempts[0].GetProperty("result").GetString());
        Assert.False(attempts[0].TryGetProperty("status", out _));
        Assert.Equal(1.25, attempts[0].GetProperty("duration_ms").GetDouble());
        Assert.Equal("ok", attempts[1].GetProperty("result").GetString());
        Assert.Equal(200, attempts[1].GetProperty("status").GetInt32());
        Assert.Equal("0", attempts[1].GetProperty("duration_ms").GetRawText());
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1230000, 0)]
    [InlineData(1234567, 0)]
    [InlineData(1, 0)]
    [InlineData(9999999, 0)]
    // The next second, and the next day: the second's cached text must follow the clock.
    [InlineData(10000000, 0)]
    [InlineData(864000000000 + 5000000, 0)]
    // An offset other than UTC (the log writes UTC; an embedding app's record may not).
    [InlineData(1234500, 120)]
    [InlineData(0, -330)]
    public void The_time_drops_the_fractions_trailing_zeros_and_reads_back_to_the_tick(long ticks, int offsetMinutes)
    {
        var time = new DateTimeOffset(2026, 11, 21, 6, 34, 37, TimeSpan.FromMinutes(offsetMinutes)).AddTicks(ticks);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var reference = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            reference.WriteStringValue(time);
        }
        var expected = System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        buffer.ResetWrittenCount();
        JsonLine.Write(buffer, new Fulcrum.Forwarding.KestrelExchange(new DefaultHttpContext()), new RequestRecord("id", time));
        var line = System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        Assert.StartsWith("{\"time\":" + expected + ",", line, StringComparison.Ordinal);
        Assert.Equal(time, System.Text.Json.JsonDocument.Parse(line).RootElement.GetProperty("time").GetDateTimeOffset());
    }
}
