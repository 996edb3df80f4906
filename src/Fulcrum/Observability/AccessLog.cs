using System.Buffers;
using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Observability;

/// <summary>
/// One JSON line per request, to stdout, stderr or a file. Each thread that serves requests has its
/// own pending buffer, and a line is serialised straight into it under a lock that only the writer
/// ever contends for; the writer, a thread of its own, swaps the buffers out about every 10 ms and
/// writes each in one call. So a line costs its serialisation and an uncontended lock, with no
/// copy, no queue and no wake-up, and a slow disk or a blocked pipe never slows requests: a thread
/// whose pending lines reach <see cref="PendingLimit"/> bytes drops further lines and counts them. Lines from
/// different threads can appear out of order by up to one batch (about 10 ms); each line is whole.
/// </summary>
public sealed class AccessLog : IAsyncDisposable
{
    /// <summary>Bytes of lines one thread may have waiting before lines are dropped (about 12,000 lines).</summary>
    internal const int PendingLimit = 4 * 1024 * 1024;
    /// <summary>Pending bytes at which a thread wakes the writer before its interval is up.</summary>
    private const int WakeEarly = 256 * 1024;
    private static readonly TimeSpan GatherInterval = TimeSpan.FromMilliseconds(10);

    /// <summary>How long stopping waits for the writer to write what is pending (tests shorten it).</summary>
    internal TimeSpan DrainLimit { get; set; } = TimeSpan.FromSeconds(5);

    private readonly ThreadLocal<Pending>? _local;
    private readonly List<Pending> _all = [];
    // Set to cut the writer's wait short. No spinning before it blocks: SemaphoreSlim spun through
    // sched_yield on each of the writer's hundred waits a second, about 2% of Fulcrum's CPU under load.
    private readonly ManualResetEventSlim _wake = new(false, spinCount: 0);
    // Completed when the writer thread has written its last line.
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string? _path;
    private readonly bool _combined;
    private Stream? _output;
    private int _reopen;
    private long _dropped;
    // 1 while the writer waits for a first line; the thread whose line ends that wait wakes it.
    private int _sleeping;
    // Set when disposing starts or the output failed: lines written after it are dropped.
    private volatile bool _closed;
    // The lines inside the writer's current write call, if it is in one.
    private ArrayBufferWriter<byte>? _writing;

    private AccessLog(Stream? output, string? path = null, bool combined = false)
    {
        _output = output;
        _path = path;
        _combined = combined;
        if (output is null)
        {
            return;
        }
        if (!combined)
        {
            JsonLine.Warm();
        }
        _local = new ThreadLocal<Pending>(Register);
        new Thread(Pump) { IsBackground = true, Name = "fulcrum access log" }.Start();
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
        new(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, useAsync: false);

    /// <summary>One thread's lines waiting for the writer. Kept in <see cref="_all"/>, so lines of a thread that ended are still written.</summary>
    private sealed class Pending
    {
        public readonly Thread Owner = Thread.CurrentThread;
        public ArrayBufferWriter<byte> Lines = new(16 * 1024);
        // Only the writer touches this one: the buffer it wrote last, handed back empty at the next swap.
        public ArrayBufferWriter<byte> Spare = new(16 * 1024);
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

    internal void Write(Forwarding.ProxyExchange context, RequestRecord record)
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
            try
            {
                if (_combined)
                {
                    CombinedLine.Write(lines, context, record);
                }
                else
                {
                    JsonLine.Write(lines, context, record);
                }
            }
            catch (Exception)
            {
                // A line must never fail its request (an assembly that could not load while the
                // file descriptors were exhausted did): the half-written line goes, counted.
                Truncate(lines, before);
                Interlocked.Increment(ref _dropped);
                return;
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
                _wake.Set();
            }
        }
        else if (before < WakeEarly && after >= WakeEarly)
        {
            // A burst: have it written now rather than let it grow towards the limit.
            _wake.Set();
        }
    }

    /// <summary>Cuts <paramref name="lines"/> back to its first <paramref name="length"/> bytes (the rare path).</summary>
    private static void Truncate(ArrayBufferWriter<byte> lines, int length)
    {
        var kept = lines.WrittenSpan[..length].ToArray();
        lines.ResetWrittenCount();
        lines.Write(kept);
    }

    /// <summary>
    /// The writer: a thread of its own, so its sleeps, wake-ups and blocking writes (a slow disk,
    /// a full pipe) never touch the thread pool that serves requests. An async loop on the pool
    /// cost about 4% of requests/s at 60,000 a second (docs/performance.md, "Eighth round").
    /// </summary>
    private void Pump()
    {
        var snapshot = new List<Pending>();
        try
        {
            while (true)
            {
                var closing = _closed;
                if (_path is not null && Interlocked.Exchange(ref _reopen, 0) == 1)
                {
                    Reopen(_path);
                }
                if (!WriteAll(snapshot))
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
                        _wake.Wait();
                    }
                    // Reset as soon as the wait ends: a wake-up that comes after this is kept
                    // for the next wait, and the lines it announces are in the pass that follows.
                    _wake.Reset();
                    Interlocked.Exchange(ref _sleeping, 0);
                    continue;
                }
                if (closing)
                {
                    continue; // drain until a pass finds nothing
                }
                // Let lines gather: one write per burst, not per line. A line waits at most this
                // long, less when a thread's lines pass WakeEarly.
                _wake.Wait(GatherInterval);
                _wake.Reset();
            }
        }
        catch (Exception e)
        {
            // The output failed (a closed pipe, a full disk): stop logging rather than take the
            // process down, say so once, and count every line still pending as dropped.
            _closed = true;
            try
            {
                Console.Error.WriteLine($"fulcrum: the access log stopped: {e.Message}");
            }
            catch (IOException)
            {
                // stderr itself was the log that failed.
            }
            DropPending(snapshot);
        }
        finally
        {
            _stopped.SetResult();
        }
    }

    /// <summary>Counts every thread's unwritten lines as dropped and clears them; returns how many.</summary>
    private long DropPending(List<Pending> snapshot)
    {
        var lines = 0L;
        foreach (var pending in Snapshot(snapshot))
        {
            lock (pending)
            {
                lines += pending.Lines.WrittenSpan.Count((byte)'\n');
                pending.Lines.ResetWrittenCount();
            }
        }
        Interlocked.Add(ref _dropped, lines);
        return lines;
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
    private bool WriteAll(List<Pending> snapshot)
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
            Volatile.Write(ref _writing, taken);
            _output!.Write(taken.WrittenSpan);
            Volatile.Write(ref _writing, null);
            taken.ResetWrittenCount();
            wrote = true;
        }
        if (wrote)
        {
            _output!.Flush();
        }
        return wrote;
    }

    /// <summary>
    /// Switches to a fresh file at <paramref name="path"/>. The new file is opened before the old
    /// one is closed, so a file that cannot be opened (permissions, a missing directory) leaves
    /// lines going to the old one, with one line on stderr, rather than ending the log.
    /// </summary>
    private void Reopen(string path)
    {
        FileStream fresh;
        try
        {
            fresh = OpenFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"fulcrum: could not reopen the access log {path}: {e.Message}; still writing to the old file");
            return;
        }
        _output!.Dispose();
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
        _wake.Set();
        try
        {
            await _stopped.Task.WaitAsync(DrainLimit).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A write that does not return (a pipe nobody reads, a hung network disk) must not
            // keep Fulcrum from exiting: stop waiting, and count what is unwritten as dropped.
            // (Should the stuck write return after all, its lines are both written and counted.)
            var unwritten = DropPending([]);
            if (Volatile.Read(ref _writing) is { } writing)
            {
                var inWrite = writing.WrittenSpan.Count((byte)'\n');
                Interlocked.Add(ref _dropped, inWrite);
                unwritten += inWrite;
            }
            await Console.Error.WriteLineAsync($"fulcrum: the access log's output took no lines for {DrainLimit.TotalSeconds:0.#} s while stopping; {unwritten} unwritten line(s) are counted as dropped").ConfigureAwait(false);
            return;
        }
        if (_output is FileStream)
        {
            await _output.DisposeAsync().ConfigureAwait(false);
        }
        // The thread-local table and the wake-up event are left to the collector: a request
        // that outlives shutdown may still call Write, which must count its line, not throw.
    }
}
