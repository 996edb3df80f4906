using System.Buffers;
using System.Buffers.Text;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Http.Features;

// A ceiling probe, not a proxy: Kestrel in front, and behind it a hand-written HTTP/1.1 client on
// System.IO.Pipelines with one pool of kept-alive connections per backend, round robin. It handles
// exactly what bench/run.sh sends (GET, no body, responses framed by Content-Length) and nothing
// else: no timeouts, retries, health, logging or error handling. What it serves, against Fulcrum
// in the same run, bounds what replacing SocketsHttpHandler for HTTP/1.1 upstreams could gain
// (issue 9's lead). Usage: PORT BACKEND [BACKEND...]; with no backend it answers the 13-byte body
// itself: Kestrel's own floor, with no upstream at all.
Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") ?? "1");
var port = int.Parse(args[0]);
var pools = args[1..].Select(a => new Upstream(IPEndPoint.Parse(a))).ToArray();
var builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(k =>
{
    k.AddServerHeader = false;
    k.Listen(IPAddress.Loopback, port);
});
var app = builder.Build();
var next = 0u;
var hello = "hello world!\n"u8.ToArray();
if (pools.Length == 0)
{
    app.Run(context =>
    {
        context.Response.ContentLength = hello.Length;
        context.Response.ContentType = "text/plain";
        return context.Response.Body.WriteAsync(hello, 0, hello.Length);
    });
    await app.RunAsync();
    return;
}
app.Run(async context =>
{
    var upstream = pools[Interlocked.Increment(ref next) % (uint)pools.Length];
    var connection = upstream.Rent() ?? await upstream.ConnectAsync();
    WriteHead(connection.Output, context.Request);
    await connection.Output.FlushAsync();
    var length = await ReadHeadAsync(connection.Input, context.Response);
    var remaining = length;
    while (remaining > 0)
    {
        var read = await connection.Input.ReadAsync();
        var buffer = read.Buffer;
        var take = buffer.Slice(0, Math.Min(remaining, buffer.Length));
        foreach (var segment in take)
        {
            context.Response.BodyWriter.Write(segment.Span);
        }
        remaining -= take.Length;
        connection.Input.AdvanceTo(take.End);
    }
    upstream.Return(connection);
});
await app.RunAsync();

static void WriteHead(PipeWriter output, HttpRequest request)
{
    var target = request.HttpContext.Features.Get<IHttpRequestFeature>()!.RawTarget;
    Write(output, request.Method);
    Write(output, " ");
    Write(output, target);
    Write(output, " HTTP/1.1\r\n");
    foreach (var header in request.Headers)
    {
        if (header.Key.Equals("Connection", StringComparison.OrdinalIgnoreCase))
        {
            continue;
        }
        Write(output, header.Key);
        Write(output, ": ");
        Write(output, header.Value.ToString());
        Write(output, "\r\n");
    }
    Write(output, "\r\n");
}

static void Write(PipeWriter output, string text)
{
    var span = output.GetSpan(text.Length);
    var n = Encoding.Latin1.GetBytes(text, span);
    output.Advance(n);
}

static async ValueTask<long> ReadHeadAsync(PipeReader input, HttpResponse response)
{
    while (true)
    {
        var read = await input.ReadAsync();
        var buffer = read.Buffer;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadTo(out ReadOnlySequence<byte> head, "\r\n\r\n"u8))
        {
            input.AdvanceTo(buffer.Start, buffer.End);
            continue;
        }
        var length = Parse(head.IsSingleSegment ? head.FirstSpan : head.ToArray(), response);
        input.AdvanceTo(reader.Position);
        return length;
    }
}

static long Parse(ReadOnlySpan<byte> head, HttpResponse response)
{
    var lineEnd = head.IndexOf("\r\n"u8);
    var statusLine = lineEnd < 0 ? head : head[..lineEnd];
    Utf8Parser.TryParse(statusLine.Slice(9, 3), out int status, out _);
    response.StatusCode = status;
    long length = 0;
    var rest = lineEnd < 0 ? [] : head[(lineEnd + 2)..];
    while (!rest.IsEmpty)
    {
        var end = rest.IndexOf("\r\n"u8);
        var line = end < 0 ? rest : rest[..end];
        rest = end < 0 ? [] : rest[(end + 2)..];
        var colon = line.IndexOf((byte)':');
        var name = Encoding.Latin1.GetString(line[..colon]);
        var value = line[(colon + 1)..].Trim((byte)' ');
        if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
        {
            Utf8Parser.TryParse(value, out length, out _);
            response.ContentLength = length;
        }
        else if (!name.Equals("Connection", StringComparison.OrdinalIgnoreCase) && !name.Equals("Keep-Alive", StringComparison.OrdinalIgnoreCase))
        {
            response.Headers[name] = Encoding.Latin1.GetString(value);
        }
    }
    return length;
}

internal sealed class Upstream(IPEndPoint address)
{
    private readonly ConcurrentQueue<Connection> _idle = new();

    public Connection? Rent() => _idle.TryDequeue(out var c) ? c : null;

    public void Return(Connection connection) => _idle.Enqueue(connection);

    public async ValueTask<Connection> ConnectAsync()
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(address);
        var stream = new NetworkStream(socket, ownsSocket: true);
        return new Connection(PipeReader.Create(stream), PipeWriter.Create(stream));
    }
}

internal sealed record Connection(PipeReader Input, PipeWriter Output);
