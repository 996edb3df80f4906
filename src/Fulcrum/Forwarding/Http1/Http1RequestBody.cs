using System.IO.Pipelines;

namespace Fulcrum.Forwarding.Http1;

/// <summary>
/// The client's request body, streamed to the backend as it arrives (never buffered whole): what
/// <see cref="StreamingRequestContent"/> does for the SocketsHttpHandler path, on a pooled
/// connection. Errors reading from the client are kept apart from errors writing to the backend.
/// </summary>
internal sealed class Http1RequestBody(ProxyExchange request, ForwardingTimer timer, TimeSpan responseTimeout, RequestBodyBuffer? replay)
{
    // Taken now: reading Token from a source disposed meanwhile would throw.
    private readonly CancellationToken _token = timer.Token;

    private volatile bool _reading;

    /// <summary>
    /// Cancels the read of the client's body now pending, if one is (the exchange ended without
    /// it). Only then: a cancellation with no read pending would be taken by the next reader, a
    /// retry's, as if its own read were cancelled.
    /// </summary>
    public void CancelPendingRead()
    {
        if (_reading)
        {
            request.BodyReader.CancelPendingRead();
        }
    }

    /// <summary>True once the head went out: the backend may have received the request.</summary>
    public bool Started { get; private set; }

    public long BytesSent { get; private set; }

    /// <summary>Set when reading the client's body failed; the failure is the client's, not the backend's.</summary>
    public Exception? ClientError { get; private set; }

    private static readonly byte[] Crlf = "\r\n"u8.ToArray();
    private static readonly byte[] LastChunk = "0\r\n\r\n"u8.ToArray();
    private byte[]? _chunkSize;

    /// <summary>Sends the head (<paramref name="headLength"/> bytes of the connection's send buffer), then the body.</summary>
    public async Task SendAsync(Http1Connection connection, int headLength, bool chunked, Http1Exchange exchange)
    {
        var head = connection.SendBuffer.AsMemory(0, headLength);
        try
        {
            var reader = request.BodyReader;
            var first = true;
            if (replay is { Overflowed: false, Recorded.Length: > 0 } recorded)
            {
                timer.Activity(WaitingOn.Backend);
                Started = true;
                await connection.SendAsync(head).ConfigureAwait(false);
                first = false;
                await SendChunkAsync(connection, recorded.Recorded, chunked).ConfigureAwait(false);
            }
            while (true)
            {
                timer.Activity(WaitingOn.Client);
                ReadResult result;
                _reading = true;
                try
                {
                    result = await reader.ReadAsync(_token).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    ClientError = e;
                    throw;
                }
                finally
                {
                    _reading = false;
                }
                if (result.IsCanceled)
                {
                    // Stopped by the exchange (StopSendingAsync), not by the client: nothing is
                    // consumed, so a retry reads the same bytes.
                    reader.AdvanceTo(result.Buffer.Start);
                    throw new OperationCanceledException("the exchange ended before the request body was sent");
                }
                var buffer = result.Buffer;
                var consumed = false;
                try
                {
                    timer.Activity(WaitingOn.Backend);
                    if (first)
                    {
                        // The head and the first part of the body in one write when they fit.
                        first = false;
                        Started = true;
                        if (buffer.IsSingleSegment && !chunked && head.Length + buffer.Length <= connection.SendBuffer.Length)
                        {
                            buffer.FirstSpan.CopyTo(connection.SendBuffer.AsSpan(head.Length));
                            await connection.SendAsync(connection.SendBuffer.AsMemory(0, head.Length + (int)buffer.Length)).ConfigureAwait(false);
                            BytesSent += buffer.Length;
                            buffer = buffer.Slice(buffer.End);
                        }
                        else
                        {
                            await connection.SendAsync(head).ConfigureAwait(false);
                        }
                    }
                    foreach (var segment in buffer)
                    {
                        await SendChunkAsync(connection, segment, chunked).ConfigureAwait(false);
                    }
                    // Recorded only once consumed: a chunk whose write failed stays in the pipe for
                    // the retry to read again, so nothing is sent twice and nothing is lost.
                    if (replay is not null)
                    {
                        foreach (var segment in result.Buffer)
                        {
                            replay.Append(segment.Span);
                        }
                    }
                    reader.AdvanceTo(result.Buffer.End);
                    consumed = true;
                }
                finally
                {
                    if (!consumed)
                    {
                        reader.AdvanceTo(result.Buffer.Start);
                    }
                }
                if (result.IsCompleted)
                {
                    break;
                }
            }
            if (chunked)
            {
                await connection.SendAsync(LastChunk).ConfigureAwait(false);
            }
            exchange.BodyFinished(responseTimeout);
        }
        catch when (ClientError is not null)
        {
            // The client's body broke: the exchange cannot go on, and the response read fails
            // now rather than waiting on a backend that waits for the rest of the body. A write
            // the backend refused does not close it: the answer it sent first is still to be read.
            connection.Abort();
            throw;
        }
    }

    private async ValueTask SendChunkAsync(Http1Connection connection, ReadOnlyMemory<byte> data, bool chunked)
    {
        if (data.IsEmpty)
        {
            return;
        }
        if (chunked)
        {
            var size = _chunkSize ??= new byte[16];
            data.Length.TryFormat(size, out var n, "X", System.Globalization.CultureInfo.InvariantCulture);
            size[n++] = (byte)'\r';
            size[n++] = (byte)'\n';
            await connection.SendAsync(size.AsMemory(0, n)).ConfigureAwait(false);
            await connection.SendAsync(data).ConfigureAwait(false);
            await connection.SendAsync(Crlf).ConfigureAwait(false);
        }
        else
        {
            await connection.SendAsync(data).ConfigureAwait(false);
        }
        BytesSent += data.Length;
    }
}
