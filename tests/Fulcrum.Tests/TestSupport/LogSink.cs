using System.Text;
using System.Text.Json;

namespace Fulcrum.Tests.TestSupport;

/// <summary>A stream the access log writes into, read back as parsed JSON lines.</summary>
public sealed class LogSink : Stream
{
    private readonly object _lock = new();
    private readonly StringBuilder _text = new();

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count)
    {
        lock (_lock)
        {
            _text.Append(Encoding.UTF8.GetString(buffer, offset, count));
        }
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    public string Text
    {
        get
        {
            lock (_lock)
            {
                return _text.ToString();
            }
        }
    }

    public IReadOnlyList<JsonElement> Lines()
    {
        string text;
        lock (_lock)
        {
            text = _text.ToString();
        }
        return [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone())];
    }

    /// <summary>Waits until a line satisfies <paramref name="predicate"/>; the log is written in the background.</summary>
    public async Task<JsonElement> WaitForAsync(Func<JsonElement, bool> predicate, int timeoutMs = 5000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (true)
        {
            foreach (var line in Lines())
            {
                if (predicate(line))
                {
                    return line;
                }
            }
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException("no access log line matched; lines were:\n" + string.Join("\n", Lines()));
            }
            await Task.Delay(20);
        }
    }
}
