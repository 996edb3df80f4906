using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Observability;

/// <summary>
/// One JSON line per request, to stdout, stderr or a file. Each thread that serves requests has its
/// own pending buffer, and a line is serialised straight into it under a lock that only the writer
/// ever contends for; a background writer swaps the buffers out about every 10 ms and writes each
/// in one call. So a line costs its serialisation and an uncontended lock, with no copy, no queue
/// and no wake-up, and a slow disk or a blocked pipe never slows requests: a thread whose pending
/// lines reach <see cref="PendingLimit"/> bytes drops further lines and counts them. Lines from
/// different threads can appear out of order by up to one batch (about 10 ms); each line is whole.
/// </summary>
public sealed class AccessLog : IAsyncDisposable
{
    /// <summary>Bytes of lines one thread may have waiting before lines are dropped (about 12,000 lines).</summary>
    internal const int PendingLimit = 4 * 1024 * 1024;
    /// <summary>Pending bytes at which a thread wakes the writer before its interval is up.</summary>
    private const int WakeEarly = 256 * 1024;
    private static readonly TimeSpan GatherInterval = TimeSpan.FromMilliseconds(10);

    private readonly ThreadLocal<Pending>? _local;
    private readonly List<Pending> _all = [];
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _pump = Task.CompletedTask;
    private readonly string? _path;
    private readonly bool _combined;
    private Stream? _output;
    private int _reopen;
    private long _dropped;
    // 1 while the writer waits for a first line; the thread whose line ends that wait wakes it.
    private int _sleeping;
    // Set when disposing starts or the output failed: lines written after it are dropped.
    private volatile bool _closed;

    private AccessLog(Stream? output, string? path = null, bool combined = false)
    {
        _output = output;
        _path = path;
        _combined = combined;
        if (output is null)
        {
            return;
        }
        _local = new ThreadLocal<Pending>(Register);
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>A log that writes nothing.</summary>
    public static AccessLog Disabled { get; } = new(null);

    public bool Enabled => _local is not null;

    /// <summary>Lines dropped because the writer could not keep up or the output failed.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>A log that writes its lines to <paramref name="output"/> (tests, embedding apps).</summary>
    public static AccessLog ToStream(Stream output, string format = AccessLogConfig.JsonFormat) => new(output, null, format == AccessLogConfig.CombinedFormat);

    /// <summary>
    /// Closes and reopens the log file before the next line (SIGUSR1): after logrotate moved the
    /// file away, lines go to a new file at the configured path. No line is split or lost: the
    /// writer swaps files between bursts. Does nothing for stdout and stderr.
    /// </summary>
    public void Reopen() => Interlocked.Exchange(ref _reopen, 1);

    public static AccessLog Create(AccessLogConfig config)
    {
        if (!config.Enabled)
        {
            return Disabled;
        }
        var combined = config.Format == AccessLogConfig.CombinedFormat;
        return config.Path switch
        {
            AccessLogConfig.Stdout => new AccessLog(Console.OpenStandardOutput(), null, combined),
            AccessLogConfig.Stderr => new AccessLog(Console.OpenStandardError(), null, combined),
            var path => new AccessLog(OpenFile(path), path, combined),
        };
    }

    private static FileStream OpenFile(string path) =>
        new(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, useAsync: true);

    /// <summary>One thread's lines waiting for the writer. Kept in <see cref="_all"/>, so lines of a thread that ended are still written.</summary>
    private sealed class Pending
    {
        public readonly Thread Owner = Thread.CurrentThread;
        public ArrayBufferWriter<byte> Lines = new(16 * 1024);
        // Only the writer touches this one: the buffer it wrote last, handed back empty at the next swap.
        public ArrayBufferWriter<byte> Spare = new(16 * 1024);
        public Utf8JsonWriter? Json;
    }

    private Pending Register()
    {
        var pending = new Pending();
        lock (_all)
        {
            _all.Add(pending);
        }
        return pending;
    }

    public void Write(HttpContext context, RequestRecord record)
    {
        if (_local is null)
        {
            return;
        }
        if (_closed)
        {
            // Stopping (a request that outlived shutdown) or the output failed.
            Interlocked.Increment(ref _dropped);
            return;
        }
        var pending = _local.Value!;
        int before, after;
        lock (pending)
        {
            var lines = pending.Lines;
            before = lines.WrittenCount;
            if (_closed || before >= PendingLimit)
            {
                Interlocked.Increment(ref _dropped);
                return;
            }
            if (_combined)
            {
                CombinedLine.Write(lines, context, record);
            }
            else
            {
                // The relaxed encoder still escapes control characters and quotes (a log line cannot
                // be split or forged) but leaves '+', '<', '&' and non-ASCII as they are: this is a
                // log file, not HTML, and escaping the '+' of every timestamp cost time on every line.
                var json = pending.Json ??= new Utf8JsonWriter(lines, new JsonWriterOptions { SkipValidation = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
                json.Reset(lines);
                WriteLine(json, context, record);
                json.Flush();
            }
            lines.Write("\n"u8);
            after = lines.WrittenCount;
        }
        if (before == 0)
        {
            // Full fence on both sides (this exchange, the writer's before it rescans): a first
            // line is either seen by the rescan or wakes the writer.
            if (Interlocked.CompareExchange(ref _sleeping, 0, 1) == 1)
            {
                _wake.Release();
            }
        }
        else if (before < WakeEarly && after >= WakeEarly)
        {
            // A burst: have it written now rather than let it grow towards the limit.
            _wake.Release();
        }
    }

    // Property names encoded once: writing a string name transcodes and checks it on every line.
    private static readonly JsonEncodedText N_time = JsonEncodedText.Encode("time");
    private static readonly JsonEncodedText N_request_id = JsonEncodedText.Encode("request_id");
    private static readonly JsonEncodedText N_trace_id = JsonEncodedText.Encode("trace_id");
    private static readonly JsonEncodedText N_client = JsonEncodedText.Encode("client");
    private static readonly JsonEncodedText N_method = JsonEncodedText.Encode("method");
    private static readonly JsonEncodedText N_host = JsonEncodedText.Encode("host");
    private static readonly JsonEncodedText N_path = JsonEncodedText.Encode("path");
    private static readonly JsonEncodedText N_protocol = JsonEncodedText.Encode("protocol");
    private static readonly JsonEncodedText N_status = JsonEncodedText.Encode("status");
    private static readonly JsonEncodedText N_route = JsonEncodedText.Encode("route");
    private static readonly JsonEncodedText N_pool = JsonEncodedText.Encode("pool");
    private static readonly JsonEncodedText N_backend = JsonEncodedText.Encode("backend");
    private static readonly JsonEncodedText N_error = JsonEncodedText.Encode("error");
    private static readonly JsonEncodedText N_upstream_connect_ms = JsonEncodedText.Encode("upstream_connect_ms");
    private static readonly JsonEncodedText N_ttfb_ms = JsonEncodedText.Encode("ttfb_ms");
    private static readonly JsonEncodedText N_duration_ms = JsonEncodedText.Encode("duration_ms");
    private static readonly JsonEncodedText N_bytes_in = JsonEncodedText.Encode("bytes_in");
    private static readonly JsonEncodedText N_bytes_out = JsonEncodedText.Encode("bytes_out");
    private static readonly JsonEncodedText N_tunnel = JsonEncodedText.Encode("tunnel");
    private static readonly JsonEncodedText N_tunnel_closed_by = JsonEncodedText.Encode("tunnel_closed_by");
    private static readonly JsonEncodedText N_attempts = JsonEncodedText.Encode("attempts");
    private static readonly JsonEncodedText N_result = JsonEncodedText.Encode("result");

    // Values that come from configuration or a fixed set (route, pool, backend, error code,
    // method, protocol) repeat on every line: encoded once per string instance and kept while that
    // string lives, instead of transcoded and checked for escapes on every line.
    private static readonly ConditionalWeakTable<string, StrongBox<JsonEncodedText>> Encoded = [];

    private static void WriteKnown(Utf8JsonWriter json, JsonEncodedText name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
            return;
        }
        if (!Encoded.TryGetValue(value, out var encoded))
        {
            encoded = Encoded.GetValue(value, static v => new StrongBox<JsonEncodedText>(JsonEncodedText.Encode(v, System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)));
        }
        json.WriteString(name, encoded.Value);
    }

    internal static void WriteLine(Utf8JsonWriter json, HttpContext context, RequestRecord record)
    {
        var request = context.Request;
        json.WriteStartObject();
        json.WriteString(N_time, record.StartTime);
        json.WriteString(N_request_id, record.RequestId);
        json.WriteString(N_trace_id, record.TraceId);
        Span<byte> client = stackalloc byte[64];
        if (context.Connection.RemoteIpAddress is { } ip && ip.TryFormat(client, out var written))
        {
            json.WriteString(N_client, client[..written]);
        }
        else
        {
            json.WriteNull(N_client);
        }
        WriteKnown(json, N_method, request.Method);
        // The Host header as received (HTTP/2's :authority arrives as Host), without building a HostString.
        var host = request.Headers.Host;
        if (host.Count == 0)
        {
            json.WriteNull(N_host);
        }
        else
        {
            json.WriteString(N_host, host.ToString());
        }
        json.WriteString(N_path, request.Path.Value);
        WriteKnown(json, N_protocol, request.Protocol);
        json.WriteNumber(N_status, record.Status);
        WriteKnown(json, N_route, record.Route);
        WriteKnown(json, N_pool, record.Pool);
        WriteKnown(json, N_backend, record.Backend);
        WriteKnown(json, N_error, ErrorCodes.Code(record.Error));
        WriteMs(json, N_upstream_connect_ms, record.ConnectMs);
        WriteMs(json, N_ttfb_ms, record.TimeToFirstByteMs);
        WriteMs(json, N_duration_ms, record.ElapsedMs);
        json.WriteNumber(N_bytes_in, record.BytesIn);
        json.WriteNumber(N_bytes_out, record.BytesOut);
        if (record.Tunnelled)
        {
            // The line is written when the tunnel ends: duration is its life, bytes are both ways.
            json.WriteBoolean(N_tunnel, true);
            if (record.TunnelClosedBy is { } by)
            {
                json.WriteString(N_tunnel_closed_by, by);
            }
        }
        if (record.Attempts is { } attempts)
        {
            json.WriteStartArray(N_attempts);
            foreach (var attempt in attempts)
            {
                json.WriteStartObject();
                WriteKnown(json, N_backend, attempt.Backend);
                WriteKnown(json, N_result, attempt.Result == FulcrumError.None ? "ok" : ErrorCodes.Code(attempt.Result));
                if (attempt.Status != 0)
                {
                    json.WriteNumber(N_status, attempt.Status);
                }
                WriteMs(json, N_duration_ms, attempt.DurationMs);
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }
        json.WriteEndObject();
    }

    private static void WriteMs(Utf8JsonWriter json, JsonEncodedText name, double ms)
    {
        if (ms < 0)
        {
            json.WriteNull(name);
            return;
        }
        // Three decimals, trailing zeros dropped, written from integers: formatting a double (or
        // an integer with a "D3" format) costs several times more.
        var micros = (long)Math.Round(ms * 1000, MidpointRounding.AwayFromZero);
        Span<byte> text = stackalloc byte[32];
        (micros / 1000).TryFormat(text, out var n, default, System.Globalization.CultureInfo.InvariantCulture);
        var fraction = (int)(micros % 1000);
        if (fraction != 0)
        {
            text[n++] = (byte)'.';
            text[n++] = (byte)('0' + (fraction / 100));
            text[n++] = (byte)('0' + (fraction / 10 % 10));
            text[n++] = (byte)('0' + (fraction % 10));
            while (text[n - 1] == (byte)'0')
            {
                n--;
            }
        }
        json.WritePropertyName(name);
        json.WriteRawValue(text[..n], skipInputValidation: true);
    }

    private async Task PumpAsync()
    {
        var stop = _stop.Token;
        var snapshot = new List<Pending>();
        try
        {
            while (true)
            {
                var closing = _closed;
                if (_path is not null && Interlocked.Exchange(ref _reopen, 0) == 1)
                {
                    await ReopenAsync(_path).ConfigureAwait(false);
                }
                if (!await WriteAllAsync(snapshot).ConfigureAwait(false))
                {
                    if (closing)
                    {
                        return; // a last pass after closing found nothing left
                    }
                    // Nothing came in a whole interval: sleep until a first line, rather than
                    // waking 100 times a second on an idle proxy.
                    Interlocked.Exchange(ref _sleeping, 1);
                    if (!HasLines(snapshot) && !_closed)
                    {
                        await ((Task)_wake.WaitAsync(stop)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    }
                    Interlocked.Exchange(ref _sleeping, 0);
                    continue;
                }
                if (closing)
                {
                    continue; // drain until a pass finds nothing
                }
                // Let lines gather: one write per burst, not per line. A line waits at most this
                // long, less when a thread's lines pass WakeEarly.
                await ((Task)_wake.WaitAsync(GatherInterval, stop)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
        catch (Exception e)
        {
            // The output failed (a closed pipe, a full disk): stop logging rather than take the
            // process down, say so once, and count every line still pending as dropped.
            _closed = true;
            try
            {
                await Console.Error.WriteLineAsync($"fulcrum: the access log stopped: {e.Message}").ConfigureAwait(false);
            }
            catch (IOException)
            {
                // stderr itself was the log that failed.
            }
            foreach (var pending in Snapshot(snapshot))
            {
                lock (pending)
                {
                    Interlocked.Add(ref _dropped, pending.Lines.WrittenSpan.Count((byte)'\n'));
                    pending.Lines.ResetWrittenCount();
                }
            }
        }
    }

    private List<Pending> Snapshot(List<Pending> into)
    {
        into.Clear();
        lock (_all)
        {
            into.AddRange(_all);
        }
        return into;
    }

    private static bool HasLines(List<Pending> all)
    {
        foreach (var pending in all)
        {
            lock (pending)
            {
                if (pending.Lines.WrittenCount > 0)
                {
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>Takes every thread's pending lines and writes them; false when there were none.</summary>
    private async ValueTask<bool> WriteAllAsync(List<Pending> snapshot)
    {
        var wrote = false;
        foreach (var pending in Snapshot(snapshot))
        {
            ArrayBufferWriter<byte> taken;
            lock (pending)
            {
                if (pending.Lines.WrittenCount == 0)
                {
                    if (!pending.Owner.IsAlive)
                    {
                        lock (_all)
                        {
                            _all.Remove(pending);
                        }
                    }
                    continue;
                }
                taken = pending.Lines;
                pending.Lines = pending.Spare;
                pending.Spare = taken;
            }
            await _output!.WriteAsync(taken.WrittenMemory).ConfigureAwait(false);
            taken.ResetWrittenCount();
            wrote = true;
        }
        if (wrote)
        {
            await _output!.FlushAsync().ConfigureAwait(false);
        }
        return wrote;
    }

    /// <summary>
    /// Switches to a fresh file at <paramref name="path"/>. The new file is opened before the old
    /// one is closed, so a file that cannot be opened (permissions, a missing directory) leaves
    /// lines going to the old one, with one line on stderr, rather than ending the log.
    /// </summary>
    private async Task ReopenAsync(string path)
    {
        FileStream fresh;
        try
        {
            fresh = OpenFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"fulcrum: could not reopen the access log {path}: {e.Message}; still writing to the old file").ConfigureAwait(false);
            return;
        }
        await _output!.DisposeAsync().ConfigureAwait(false);
        _output = fresh;
    }

    public async ValueTask DisposeAsync()
    {
        if (_local is null)
        {
            return;
        }
        // Lines written from here on are dropped and counted; the writer drains what is pending.
        _closed = true;
        _stop.Cancel();
        await _pump.ConfigureAwait(false);
        if (_output is FileStream)
        {
            await _output.DisposeAsync().ConfigureAwait(false);
        }
        // The thread-local table and the wake-up semaphore are left to the collector: a request
        // that outlives shutdown may still call Write, which must count its line, not throw.
        _stop.Dispose();
    }
}
