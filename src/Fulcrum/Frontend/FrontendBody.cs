using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Frontend;

/// <summary>
/// A request body read off the client connection's pipe, as a pipe of its own: exactly
/// Content-Length bytes, or a chunked body decoded by <see cref="ChunkedDecoder"/>. The bytes after
/// it stay in the connection's pipe for the next request. One per connection, reset per request.
/// </summary>
/// <remarks>
/// A client that closes before the body is whole fails the read with
/// <see cref="ConnectionResetException"/> (the pipeline's <c>client_aborted</c>); chunked framing
/// that breaks fails it with <see cref="BadHttpRequestException"/> (<c>bad_request</c>), and the
/// connection is closed after the answer (<see cref="FramingBroken"/>).
/// </remarks>
internal sealed class FrontendBody(PipeReader input) : PipeReader
{
    private RequestFraming _framing;
    private long _left;
    private ChunkedDecoder _decoder = new();
    private byte[] _decoded = [];
    private int _decodedStart;
    private int _decodedEnd;
    private byte[]? _scratch;
    private ReadOnlySequence<byte> _lastLength;
    private bool _done;

    // The last result handed out was made here (an ended body, decoded data), not the connection's.
    private bool _synthetic;

    /// <summary>The chunked framing broke: nothing after it on the connection can be trusted.</summary>
    public bool FramingBroken { get; private set; }

    /// <summary>True once the body was read to its end.</summary>
    public bool Done => _done;

    public void Reset(RequestFraming framing, long contentLength)
    {
        _framing = framing;
        _left = framing == RequestFraming.Length ? contentLength : 0;
        _done = framing == RequestFraming.None || (framing == RequestFraming.Length && contentLength == 0);
        _decodedStart = _decodedEnd = 0;
        _lastLength = default;
        FramingBroken = false;
        if (framing == RequestFraming.Chunked)
        {
            _decoder = new ChunkedDecoder();
        }
    }

    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (_framing == RequestFraming.Chunked)
        {
            return await ReadChunkedAsync(cancellationToken).ConfigureAwait(false);
        }
        if (_done || _left == 0)
        {
            _done = true;
            _synthetic = true;
            return new ReadResult(ReadOnlySequence<byte>.Empty, false, true);
        }
        var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
        _synthetic = false;
        return OfLength(result);
    }

    private ReadResult OfLength(ReadResult result)
    {
        var buffer = result.Buffer;
        if (buffer.Length > _left)
        {
            buffer = buffer.Slice(0, _left);
        }
        else if (result.IsCompleted && buffer.Length < _left)
        {
            input.AdvanceTo(result.Buffer.Start);
            throw new ConnectionResetException($"the client closed the connection with {_left - buffer.Length} bytes of its body still to send");
        }
        _lastLength = buffer;
        return new ReadResult(buffer, result.IsCanceled, isCompleted: buffer.Length == _left);
    }

    public override bool TryRead(out ReadResult result)
    {
        if (_framing == RequestFraming.Chunked)
        {
            // Chunked bodies are read asynchronously only; nothing in Fulcrum calls this on them.
            result = default;
            return false;
        }
        if (_done || _left == 0)
        {
            _done = true;
            _synthetic = true;
            result = new ReadResult(ReadOnlySequence<byte>.Empty, false, true);
            return true;
        }
        if (!input.TryRead(out var read))
        {
            result = default;
            return false;
        }
        _synthetic = false;
        result = OfLength(read);
        return true;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        if (_synthetic)
        {
            // An ended body, or decoded bytes: positions are not the connection's.
            if (_framing == RequestFraming.Chunked && _decodedEnd > _decodedStart)
            {
                AdvanceDecoded(consumed);
            }
            return;
        }
        if (_framing == RequestFraming.Chunked)
        {
            return;
        }
        var taken = _lastLength.Slice(0, consumed).Length;
        _left -= taken;
        if (_left == 0)
        {
            _done = true;
        }
        input.AdvanceTo(consumed, examined);
    }

    /// <summary>Positions are in the decoded buffer: moves its start.</summary>
    private void AdvanceDecoded(SequencePosition consumed)
    {
        var sequence = new ReadOnlySequence<byte>(_decoded, _decodedStart, _decodedEnd - _decodedStart);
        _decodedStart += (int)sequence.Slice(0, consumed).Length;
    }

    private async ValueTask<ReadResult> ReadChunkedAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            _synthetic = true;
            if (_decodedEnd > _decodedStart)
            {
                // Decoded bytes not consumed yet (a write that failed): the same bytes again.
                return new ReadResult(new ReadOnlySequence<byte>(_decoded, _decodedStart, _decodedEnd - _decodedStart), false, false);
            }
            if (_done)
            {
                return new ReadResult(ReadOnlySequence<byte>.Empty, false, true);
            }
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsCanceled)
            {
                input.AdvanceTo(result.Buffer.Start);
                return new ReadResult(ReadOnlySequence<byte>.Empty, true, false);
            }
            var buffer = result.Buffer;
            ReadOnlySpan<byte> span;
            if (buffer.IsSingleSegment)
            {
                span = buffer.FirstSpan;
            }
            else
            {
                // A size line may straddle two blocks: decode from one contiguous copy.
                var length = (int)Math.Min(buffer.Length, 32 * 1024);
                if (_scratch is null || _scratch.Length < length)
                {
                    _scratch = new byte[Math.Max(length, 32 * 1024)];
                }
                buffer.Slice(0, length).CopyTo(_scratch);
                span = _scratch.AsSpan(0, length);
            }
            var outcome = _decoder.Next(span, out var consumed, out var data, out var refusal);
            switch (outcome)
            {
                case ChunkResult.Data:
                    if (_decoded.Length < data.Length)
                    {
                        // Made on the first chunked body a connection carries, not for every connection.
                        _decoded = new byte[Math.Max(data.Length, Math.Max(8 * 1024, _decoded.Length * 2))];
                    }
                    data.Of(span).CopyTo(_decoded);
                    _decodedStart = 0;
                    _decodedEnd = data.Length;
                    input.AdvanceTo(buffer.GetPosition(consumed));
                    continue;
                case ChunkResult.End:
                    input.AdvanceTo(buffer.GetPosition(consumed));
                    _done = true;
                    continue;
                case ChunkResult.Refused:
                    input.AdvanceTo(buffer.GetPosition(consumed));
                    FramingBroken = true;
                    throw new BadHttpRequestException($"the chunked request body is malformed: {refusal.Message}", StatusCodes.Status400BadRequest);
                default:
                    if (result.IsCompleted)
                    {
                        input.AdvanceTo(buffer.GetPosition(consumed));
                        throw new ConnectionResetException("the client closed the connection before its chunked body ended");
                    }
                    input.AdvanceTo(buffer.GetPosition(consumed), buffer.End);
                    continue;
            }
        }
    }

    /// <summary>
    /// Reads and drops what is left of the body, up to <paramref name="limit"/> bytes within
    /// <paramref name="cancellationToken"/>: true when the body ended, so the connection can carry
    /// the next request; false when it must be closed instead.
    /// </summary>
    public async ValueTask<bool> DrainAsync(long limit, CancellationToken cancellationToken)
    {
        var dropped = 0L;
        try
        {
            while (!_done)
            {
                var result = await ReadAsync(cancellationToken).ConfigureAwait(false);
                if (result.IsCanceled)
                {
                    return false;
                }
                dropped += result.Buffer.Length;
                AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
                if (dropped > limit)
                {
                    return false;
                }
            }
            return _done;
        }
        catch (Exception e) when (e is OperationCanceledException or ConnectionResetException or BadHttpRequestException or IOException or InvalidOperationException)
        {
            return false;
        }
    }

    public override void CancelPendingRead() => input.CancelPendingRead();

    public override void Complete(Exception? exception = null)
    {
        // The connection's pipe is not this body's to complete: the next request reads on from it.
    }
}
