using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using Fulcrum.Forwarding;
using Microsoft.AspNetCore.WebUtilities;

namespace Fulcrum.Frontend;

/// <summary>The response side of <see cref="FrontendExchange"/>: headers kept as set, the head and framing written when the body starts or the pipeline is done.</summary>
internal sealed partial class FrontendExchange
{
    // ---- The response ----

    public override bool HasStarted => _started;

    public override int Status { get; set; }

    public override void AddHeader(string name, string value)
    {
        if (_started)
        {
            throw new InvalidOperationException("the response has started: its headers can no longer change");
        }
        if (name.Length == 0 || name.AsSpan().ContainsAnyExcept(TokenChars))
        {
            throw new InvalidOperationException($"invalid response header name '{name}'");
        }
        if (value.AsSpan().ContainsAnyExcept(ValueChars))
        {
            throw new InvalidOperationException($"invalid control character in the value of response header '{name}'");
        }
        switch (name.Length)
        {
            case 4 when string.Equals(name, "Date", StringComparison.OrdinalIgnoreCase):
                _hasDate = true;
                break;
            case 10 when string.Equals(name, "Connection", StringComparison.OrdinalIgnoreCase):
                // Fulcrum writes the connection's own Connection header; a "close" is kept as a wish.
                _closeAsked |= value.Contains("close", StringComparison.OrdinalIgnoreCase);
                return;
            case 14 when string.Equals(name, "Content-Length", StringComparison.OrdinalIgnoreCase):
                if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var length))
                {
                    throw new InvalidOperationException($"invalid Content-Length '{value}'");
                }
                _contentLength = length;
                break;
            case 17 when string.Equals(name, "Transfer-Encoding", StringComparison.OrdinalIgnoreCase):
                return; // the framing is Fulcrum's to choose
        }
        _headers.Add(new KeyValuePair<string, string>(name, value));
    }

    // The response's X-Request-Id, written from the record's own text when the head goes out.
    private Observability.RequestRecord? _requestIdOf;

    internal override void SetRequestIdHeader(Observability.RequestRecord record)
    {
        Remove(HeaderRules.RequestIdHeader);
        _requestIdOf = record;
    }

    private void Remove(string name)
    {
        for (var i = _headers.Count - 1; i >= 0; i--)
        {
            if (string.Equals(_headers[i].Key, name, StringComparison.OrdinalIgnoreCase))
            {
                _headers.RemoveAt(i);
            }
        }
        if (_requestIdOf is not null && string.Equals(name, HeaderRules.RequestIdHeader, StringComparison.OrdinalIgnoreCase))
        {
            _requestIdOf = null;
        }
    }

    public override void SetHeader(string name, string value)
    {
        Remove(name);
        AddHeader(name, value);
    }

    public override void ClearResponse()
    {
        _headers.Clear();
        _requestIdOf = null;
        Status = 200;
        _contentLength = null;
        _hasDate = _closeAsked = false;
    }

    public override ValueTask StartAsync(CancellationToken cancellationToken)
    {
        WriteHead();
        var flushing = _output.FlushAsync(cancellationToken);
        return flushing.IsCompletedSuccessfully ? default : Await(flushing);

        static async ValueTask Await(ValueTask<FlushResult> flushing) => await flushing.ConfigureAwait(false);
    }

    public override Memory<byte> GetBodyMemory()
    {
        WriteHead();
        if (!_chunked)
        {
            return _output.GetMemory();
        }
        _chunkMemory = _output.GetMemory(4096 + ChunkPrefix + 2);
        return _chunkMemory[ChunkPrefix..^2];
    }

    public override void AdvanceBody(int count)
    {
        if (!_chunked)
        {
            _output.Advance(count);
            return;
        }
        if (count == 0)
        {
            return;
        }
        // The data was read in after room for the longest size line: move it up to the one this
        // size needs, so a chunk goes out as "size CRLF data CRLF" with no padding.
        var span = _chunkMemory.Span;
        Span<byte> size = stackalloc byte[8];
        count.TryFormat(size, out var digits, "X", CultureInfo.InvariantCulture);
        var prefix = digits + 2;
        span.Slice(ChunkPrefix, count).CopyTo(span[prefix..]);
        size[..digits].CopyTo(span);
        span[digits] = (byte)'\r';
        span[digits + 1] = (byte)'\n';
        span[prefix + count] = (byte)'\r';
        span[prefix + count + 1] = (byte)'\n';
        _output.Advance(prefix + count + 2);
    }

    public override ValueTask<FlushResult> FlushBodyAsync(CancellationToken cancellationToken) => _output.FlushAsync(cancellationToken);

    public override async ValueTask WriteBodyAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        WriteHead();
        if (_bodyless || body.IsEmpty)
        {
            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            return;
        }
        if (_chunked)
        {
            var size = Encoding.ASCII.GetBytes(body.Length.ToString("X", CultureInfo.InvariantCulture) + "\r\n");
            _output.Write(size);
            _output.Write(body.Span);
            _output.Write("\r\n"u8);
        }
        else
        {
            _output.Write(body.Span);
        }
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    // HTTP/1.1 trailers reach a client only if it asked for them (TE: trailers); Kestrel sends
    // none over HTTP/1.1 either, so the two front ends relay the same.
    public override bool SupportsTrailers => false;

    public override void AddTrailer(string name, string value)
    {
    }

    public override ValueTask LingerAsync()
    {
        // The loop reads away what is left of the body before it closes the connection.
        Closing = true;
        return default;
    }

    /// <summary>Gives the head's buffer back between requests (the strings made from it stay).</summary>
    public void Release()
    {
        if (_head.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_head);
            _head = [];
        }
    }

    /// <summary>
    /// Ends the response once the pipeline is done with it: the head if nothing started it, the
    /// last chunk of a chunked body, a flush. False when the connection must close now.
    /// </summary>
    public async ValueTask<bool> FinishAsync()
    {
        if (WasAborted)
        {
            return false;
        }
        WriteHead();
        if (_chunked)
        {
            _output.Write("0\r\n\r\n"u8);
        }
        var flushed = await _output.FlushAsync(_connection.ConnectionClosed).ConfigureAwait(false);
        return !flushed.IsCompleted && !flushed.IsCanceled && !Closing && !_closeRequested;
    }

    private void WriteHead()
    {
        if (_started)
        {
            return;
        }
        _started = true;
        var status = Status;
        _bodyless = status is < 200 or 204 or 304 || (Method.Length == 4 && string.Equals(Method, "HEAD", StringComparison.Ordinal));
        var http10 = _parsed.Minor == 0;
        if (_closeAsked || _closeRequested)
        {
            Closing = true;
        }
        if (!_bodyless && _contentLength is null)
        {
            if (http10)
            {
                Closing = true; // the body ends with the connection
            }
            else
            {
                _chunked = true;
            }
        }

        var size = 256 + (_requestIdOf?.RequestIdText.Length ?? 0);
        foreach (var (name, value) in _headers)
        {
            size += name.Length + value.Length + 4;
        }
        var span = _output.GetSpan(size);
        var at = 0;
        var line = StatusLine(status);
        line.CopyTo(span);
        at += line.Length;
        foreach (var (name, value) in _headers)
        {
            at += Encoding.ASCII.GetBytes(name, span[at..]);
            span[at++] = (byte)':';
            span[at++] = (byte)' ';
            at += Encoding.Latin1.GetBytes(value, span[at..]);
            span[at++] = (byte)'\r';
            span[at++] = (byte)'\n';
        }
        if (_requestIdOf is not null)
        {
            "X-Request-Id: "u8.CopyTo(span[at..]);
            at += 14;
            at += Encoding.Latin1.GetBytes(_requestIdOf.RequestIdText, span[at..]);
            span[at++] = (byte)'\r';
            span[at++] = (byte)'\n';
        }
        if (!_hasDate)
        {
            var date = HttpDate.HeaderLine;
            date.CopyTo(span[at..]);
            at += date.Length;
        }
        if (_chunked)
        {
            "Transfer-Encoding: chunked\r\n"u8.CopyTo(span[at..]);
            at += 28;
        }
        if (Closing)
        {
            "Connection: close\r\n"u8.CopyTo(span[at..]);
            at += 19;
        }
        else if (http10)
        {
            "Connection: keep-alive\r\n"u8.CopyTo(span[at..]);
            at += 24;
        }
        span[at++] = (byte)'\r';
        span[at++] = (byte)'\n';
        _output.Advance(at);
    }

    private static byte[] StatusLine(int status)
    {
        if (status is < 100 or > 599)
        {
            return Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"HTTP/1.1 {status} \r\n"));
        }
        return StatusLines[status] ??= Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"HTTP/1.1 {status} {ReasonPhrases.GetReasonPhrase(status)}\r\n"));
    }

    // tchar (RFC 9110 §5.6.2), and what a field value may hold (RFC 9110 §5.5): HTAB, SP, visible
    // ASCII and obs-text, passed on as the Latin-1 bytes they came as (Kestrel's listeners are set the same way).
    private static readonly SearchValues<char> TokenChars = SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
    private static readonly SearchValues<char> ValueChars = SearchValues.Create(
        "\t !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~" + ObsText());

    private static string ObsText() => string.Create(128, 0, static (span, _) =>
    {
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = (char)(0x80 + i);
        }
    });
}
