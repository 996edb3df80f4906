using System.Net;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Forwarding;

/// <summary>
/// The client's request body, streamed to the backend as it arrives: never buffered whole, so a
/// 100 MiB upload costs a few pipe segments of memory. Errors reading from the client are kept
/// apart from errors writing to the backend, so the pipeline can tell "the client broke the body"
/// (400 or client_aborted) from "the backend broke the connection" (upstream_reset).
/// </summary>
internal sealed class StreamingRequestContent : HttpContent
{
    private readonly HttpRequest _request;
    private readonly ForwardingTimer _timer;
    private readonly TimeSpan _responseTimeout;
    private readonly CancellationToken _token;
    private readonly RequestBodyBuffer? _replay;

    /// <param name="request">The client's request, whose body is read as it arrives.</param>
    /// <param name="timer">The attempt's timer, re-armed by every chunk.</param>
    /// <param name="responseTimeout">Armed once the body is sent.</param>
    /// <param name="replay">
    /// Shared by every attempt of the request when it may be retried: what an earlier attempt read
    /// is sent again first, and what this one reads is added to it.
    /// </param>
    public StreamingRequestContent(HttpRequest request, ForwardingTimer timer, TimeSpan responseTimeout, RequestBodyBuffer? replay = null)
    {
        _request = request;
        _timer = timer;
        _responseTimeout = responseTimeout;
        _replay = replay;
        // Taken now: the handler may start sending the body late (Expect: 100-continue), after
        // the timer's source is gone, and reading Token from a disposed source throws.
        _token = timer.Token;
    }

    /// <summary>True once the backend connection asked for the body: the request may have been received.</summary>
    public bool Started { get; private set; }

    public long BytesSent { get; private set; }

    /// <summary>Set when reading the client's body failed; the failure is the client's, not the backend's.</summary>
    public Exception? ClientError { get; private set; }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        Started = true;
        var reader = _request.BodyReader;
        var token = _token;
        if (_replay is { Overflowed: false, Recorded.Length: > 0 } replay)
        {
            _timer.Activity(WaitingOn.Backend);
            await stream.WriteAsync(replay.Recorded, token).ConfigureAwait(false);
            BytesSent += replay.Recorded.Length;
        }
        while (true)
        {
            _timer.Activity(WaitingOn.Client);
            System.IO.Pipelines.ReadResult result;
            try
            {
                result = await reader.ReadAsync(token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                ClientError = e;
                throw;
            }
            var buffer = result.Buffer;
            var consumed = false;
            try
            {
                foreach (var segment in buffer)
                {
                    _timer.Activity(WaitingOn.Backend);
                    await stream.WriteAsync(segment, token).ConfigureAwait(false);
                    BytesSent += segment.Length;
                }
                // Recorded only once consumed: a chunk whose write failed stays in the pipe for
                // the retry to read again, so nothing is sent twice and nothing is lost.
                if (_replay is not null)
                {
                    foreach (var segment in buffer)
                    {
                        _replay.Append(segment.Span);
                    }
                }
                reader.AdvanceTo(buffer.End);
                consumed = true;
            }
            finally
            {
                if (!consumed)
                {
                    reader.AdvanceTo(buffer.Start);
                }
            }
            if (result.IsCompleted)
            {
                break;
            }
        }
        await stream.FlushAsync(token).ConfigureAwait(false);
        _timer.AwaitResponse(_responseTimeout);
    }

    protected override bool TryComputeLength(out long length)
    {
        // A known length is forwarded as Content-Length; otherwise the handler sends chunked.
        if (_request.ContentLength is long known)
        {
            length = known;
            return true;
        }
        length = 0;
        return false;
    }

    protected override Task<Stream> CreateContentReadStreamAsync() =>
        throw new NotSupportedException("the request body streams straight through to the backend");
}
