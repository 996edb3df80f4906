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

    public StreamingRequestContent(HttpRequest request, ForwardingTimer timer, TimeSpan responseTimeout)
    {
        _request = request;
        _timer = timer;
        _responseTimeout = responseTimeout;
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
            foreach (var segment in buffer)
            {
                _timer.Activity(WaitingOn.Backend);
                await stream.WriteAsync(segment, token).ConfigureAwait(false);
                BytesSent += segment.Length;
            }
            reader.AdvanceTo(buffer.End);
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
