using System.Buffers;

namespace Fulcrum.Forwarding;

/// <summary>
/// The part of a request body already read from the client, kept so a retry can send it again.
/// Bounded by the route's <c>retries.max_body</c>: past it the buffer gives up (and returns its
/// memory), and the request can no longer be retried once its body has started to flow.
/// </summary>
internal sealed class RequestBodyBuffer : IDisposable
{
    private readonly long _max;
    private byte[]? _data;
    private int _length;

    public RequestBodyBuffer(long max) => _max = max;

    /// <summary>True once the body outgrew the limit: what was sent cannot be replayed.</summary>
    public bool Overflowed { get; private set; }

    public ReadOnlyMemory<byte> Recorded => _data is null ? ReadOnlyMemory<byte>.Empty : _data.AsMemory(0, _length);

    public void Append(ReadOnlySpan<byte> chunk)
    {
        if (Overflowed || chunk.IsEmpty)
        {
            return;
        }
        if (_length + (long)chunk.Length > _max)
        {
            Overflowed = true;
            Release();
            return;
        }
        if (_data is null || _data.Length < _length + chunk.Length)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(_length + chunk.Length, Math.Min((int)_max, Math.Max(4096, (_data?.Length ?? 0) * 2))));
            _data?.AsSpan(0, _length).CopyTo(grown);
            Release();
            _data = grown;
        }
        chunk.CopyTo(_data.AsSpan(_length));
        _length += chunk.Length;
    }

    private void Release()
    {
        if (_data is not null)
        {
            ArrayPool<byte>.Shared.Return(_data);
            _data = null;
        }
        if (Overflowed)
        {
            _length = 0;
        }
    }

    public void Dispose()
    {
        if (_data is not null)
        {
            ArrayPool<byte>.Shared.Return(_data);
            _data = null;
        }
    }
}
