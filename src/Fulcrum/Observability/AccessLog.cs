using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Observability;

/// <summary>
/// One JSON line per request, to stdout, stderr or a file. The line is serialised on the request's
/// thread into a pooled buffer and handed to a background writer through a bounded channel, so a
/// slow disk or a blocked pipe never slows requests: when the channel is full, lines are dropped
/// and counted rather than waited for. The writer wakes at most every 10 ms and writes what has
/// gathered in one call, so a line reaches the file within about 10 ms.
/// </summary>
public sealed class AccessLog : IAsyncDisposable
{
    private const int Capacity = 16_384;
    private const int BatchBytes = 64 * 1024;
    private static readonly TimeSpan GatherInterval = TimeSpan.FromMilliseconds(10);

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    private readonly Channel<(byte[] Buffer, int Length)>? _channel;
    private readonly Task _pump = Task.CompletedTask;
    private readonly string? _path;
    private readonly bool _combined;
    private Stream? _output;
    private int _reopen;
    private long _dropped;

    private AccessLog(Stream? output, string? path = null, bool combined = false)
    {
        _output = output;
        _path = path;
        _combined = combined;
        if (output is null)
        {
            return;
        }
        _channel = Channel.CreateBounded<(byte[], int)>(new BoundedChannelOptions(Capacity)
        {
            SingleReader = true,
            // Wait, not DropWrite: with DropWrite, TryWrite reports success for a line it drops,
            // so drops went uncounted. Nothing waits: a full channel makes TryWrite return false.
            FullMode = BoundedChannelFullMode.Wait,
        });
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>A log that writes nothing.</summary>
    public static AccessLog Disabled { get; } = new(null);

    public bool Enabled => _channel is not null;

    /// <summary>Lines dropped because the writer could not keep up.</summary>
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

    public void Write(HttpContext context, RequestRecord record)
    {
        if (_channel is null)
        {
            return;
        }
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(1024);
        buffer.ResetWrittenCount();
        if (_combined)
        {
            CombinedLine.Write(buffer, context, record);
        }
        else
        {
            // The relaxed encoder still escapes control characters and quotes (a log line cannot be
            // split or forged) but leaves '+', '<', '&' and non-ASCII as they are: this is a log
            // file, not HTML, and escaping the '+' of every timestamp cost time on every line.
            var json = t_writer ??= new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
            json.Reset(buffer);
            WriteLine(json, context, record);
            json.Flush();
        }
        buffer.Write("\n"u8);

        var line = ArrayPool<byte>.Shared.Rent(buffer.WrittenCount);
        buffer.WrittenSpan.CopyTo(line);
        if (!_channel.Writer.TryWrite((line, buffer.WrittenCount)))
        {
            ArrayPool<byte>.Shared.Return(line);
            Interlocked.Increment(ref _dropped);
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
        json.WriteString(N_method, request.Method);
        json.WriteString(N_host, request.Host.Value);
        json.WriteString(N_path, request.Path.Value);
        json.WriteString(N_protocol, request.Protocol);
        json.WriteNumber(N_status, record.Status);
        json.WriteString(N_route, record.Route);
        json.WriteString(N_pool, record.Pool);
        json.WriteString(N_backend, record.Backend);
        json.WriteString(N_error, ErrorCodes.Code(record.Error));
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
                json.WriteString(N_backend, attempt.Backend);
                json.WriteString(N_result, attempt.Result == FulcrumError.None ? "ok" : ErrorCodes.Code(attempt.Result));
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
        }
        else
        {
            // Three decimals, written as integers: formatting a double costs several times more.
            var micros = (long)Math.Round(ms * 1000, MidpointRounding.AwayFromZero);
            Span<byte> text = stackalloc byte[32];
            (micros / 1000).TryFormat(text, out var n, default, System.Globalization.CultureInfo.InvariantCulture);
            var fraction = (int)(micros % 1000);
            if (fraction != 0)
            {
                text[n++] = (byte)'.';
                fraction.TryFormat(text[n..], out var digits, "D3", System.Globalization.CultureInfo.InvariantCulture);
                n += digits;
                while (text[n - 1] == (byte)'0')
                {
                    n--;
                }
            }
            json.WritePropertyName(name);
            json.WriteRawValue(text[..n], skipInputValidation: true);
        }
    }

    private async Task PumpAsync()
    {
        var reader = _channel!.Reader;
        var batch = new ArrayBufferWriter<byte>(BatchBytes);
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                if (_path is not null && Interlocked.Exchange(ref _reopen, 0) == 1)
                {
                    await ReopenAsync(_path).ConfigureAwait(false);
                }
                // Gather a burst of lines into one write: one system call per burst, not per line.
                while (reader.TryRead(out var item))
                {
                    if (batch.WrittenCount + item.Length > BatchBytes && batch.WrittenCount > 0)
                    {
                        await _output!.WriteAsync(batch.WrittenMemory).ConfigureAwait(false);
                        batch.ResetWrittenCount();
                    }
                    item.Buffer.AsSpan(0, item.Length).CopyTo(batch.GetSpan(item.Length));
                    batch.Advance(item.Length);
                    ArrayPool<byte>.Shared.Return(item.Buffer);
                }
                if (batch.WrittenCount > 0)
                {
                    await _output!.WriteAsync(batch.WrittenMemory).ConfigureAwait(false);
                    batch.ResetWrittenCount();
                }
                await _output!.FlushAsync().ConfigureAwait(false);
                // Let lines gather before waking again: waking the writer for every line costs a
                // thread-pool dispatch per request under load. A line waits at most this long.
                if (!reader.Completion.IsCompleted)
                {
                    await Task.Delay(GatherInterval).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e)
        {
            // The output failed (a closed pipe, a full disk): stop logging rather than take the
            // process down, say so once, and give back every buffer still queued.
            _channel.Writer.TryComplete();
            try
            {
                await Console.Error.WriteLineAsync($"fulcrum: the access log stopped: {e.Message}").ConfigureAwait(false);
            }
            catch (IOException)
            {
                // stderr itself was the log that failed.
            }
            while (reader.TryRead(out var item))
            {
                ArrayPool<byte>.Shared.Return(item.Buffer);
                Interlocked.Increment(ref _dropped);
            }
        }
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
        if (_channel is null)
        {
            return;
        }
        _channel.Writer.TryComplete();
        await _pump.ConfigureAwait(false);
        if (_output is FileStream)
        {
            await _output.DisposeAsync().ConfigureAwait(false);
        }
    }
}
