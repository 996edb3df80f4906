using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using Fulcrum.Forwarding;
using Fulcrum.Forwarding.Http1;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Primitives;

namespace Fulcrum.Frontend;

/// <summary>
/// A request Fulcrum's HTTP/1.1 front end read, and the response it writes, in the pipeline's
/// shape. One per client connection, reset for each request: the head stays as the bytes it came
/// in (headers go upstream as they were received, minus hop-by-hop ones), and the strings the
/// pipeline asks for (method, host, target) are made once and kept while the next request on the
/// connection sends the same bytes, as a keep-alive client nearly always does.
/// </summary>
/// <remarks>
/// The response's head is written when its body starts, or when the pipeline is done with it
/// (<see cref="FinishAsync"/>): status line, the headers as set, <c>Date</c> unless the backend
/// sent one, and the framing: Content-Length as given; else chunked to an HTTP/1.1 client and
/// close-delimited to an HTTP/1.0 one; none for HEAD, 1xx, 204 and 304.
/// </remarks>
internal sealed class FrontendExchange : ProxyExchange
{
    private const int ChunkPrefix = 10; // up to 8 hex digits and CRLF before each chunk's data
    private static readonly byte[][] StatusLines = new byte[600][];

    private readonly ConnectionContext _connection;
    private readonly PipeWriter _output;
    private readonly IPAddress? _remote;

    // The head's bytes while its request runs, rented: an idle connection holds none.
    private byte[] _head = [];
    private readonly RequestHead _parsed = new();

    private readonly CachedText _method = new();
    private readonly CachedText _authority = new();
    private readonly CachedText _target = new();
    private string? _path;
    private string? _routeHost;
    private string? _routeHostOf; // the authority _routeHost was cut from

    private readonly List<KeyValuePair<string, string>> _headers = new(16);
    private long? _contentLength;
    private bool _hasDate;
    private bool _closeAsked;
    private bool _started;
    private bool _chunked;
    private bool _bodyless;
    private Memory<byte> _chunkMemory;

    public FrontendExchange(ConnectionContext connection)
    {
        _connection = connection;
        _output = connection.Transport.Output;
        _remote = (connection.RemoteEndPoint as IPEndPoint)?.Address;
        Body = new FrontendBody(connection.Transport.Input);
    }

    /// <summary>Where the head parser writes; <see cref="Begin"/> reads it.</summary>
    public RequestHead Parsed => _parsed;

    /// <summary>The request's body, read off the connection.</summary>
    public FrontendBody Body { get; }

    /// <summary>The connection must close after this response (asked for, or its framing is in doubt).</summary>
    public bool Closing { get; private set; }

    private volatile bool _closeRequested;

    /// <summary>The server asked the connection to close (shutdown): no request after this one.</summary>
    public bool CloseRequested => _closeRequested;

    /// <summary>From any thread: the response now being written (if any) closes the connection.</summary>
    public void RequestClose() => _closeRequested = true;

    /// <summary>The pipeline cut the connection.</summary>
    public bool WasAborted { get; private set; }

    /// <summary>Starts a request whose head is the first <paramref name="length"/> bytes of <paramref name="source"/>.</summary>
    public void Begin(ReadOnlySpan<byte> source, int length, bool lastOnConnection)
    {
        if (_head.Length < length)
        {
            Release();
            _head = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1024));
        }
        source[..length].CopyTo(_head);
        var head = _head.AsSpan(0, length);
        var parsed = _parsed;
        _method.Set(head.Slice(parsed.Method.Start, parsed.Method.Length), KnownMethod);
        var authority = parsed.Host.Length > 0 ? _authority.Set(head.Slice(parsed.Host.Start, parsed.Host.Length), null) : null;
        var before = _target.Value;
        var target = _target.Set(head.Slice(parsed.Target.Start, parsed.Target.Length), null);
        if (!ReferenceEquals(before, target) || _path is null)
        {
            var query = target.IndexOf('?', StringComparison.Ordinal);
            _path = query < 0 ? target : target[..query];
        }
        if (authority is null)
        {
            _routeHost = "";
            _routeHostOf = null;
        }
        else if (!ReferenceEquals(authority, _routeHostOf))
        {
            // Cut again only when the Host bytes changed: "host:port" made a new string per request.
            _routeHost = HostOf(authority);
            _routeHostOf = authority;
        }
        Body.Reset(parsed.Framing, parsed.ContentLength);

        _headers.Clear();
        _requestIdOf = null;
        Status = 200;
        _contentLength = null;
        _hasDate = _closeAsked = _started = _chunked = false;
        _bodyless = false;
        WasAborted = false;
        Closing = parsed.Close || lastOnConnection;
    }

    private Observability.RequestRecord? _record;

    internal override Observability.RequestRecord NewRecord(string? requestId)
    {
        if (_record is null)
        {
            return _record = new Observability.RequestRecord(requestId);
        }
        _record.Reset(requestId);
        return _record;
    }

    // ---- The request ----

    public override string Method => _method.Value!;

    public override string Protocol => _parsed.Minor == 0 ? "HTTP/1.0" : "HTTP/1.1";

    public override string Scheme => "http";

    public override string RouteHost => _routeHost!;

    public override string? Authority => _parsed.Host.Length > 0 ? _authority.Value : null;

    public override string Path => _path!;

    // Only targets whose path needs no decoding and has no dot segment are served here (the loop
    // hands the others to Kestrel), so the routed path goes upstream exactly as it came.
    public override string UpstreamTarget => _target.Value!;

    public override IPAddress? RemoteIp => _remote;

    public override StringValues Header(string name)
    {
        var head = _head.AsSpan();
        var parsed = _parsed;
        string? one = null;
        List<string>? several = null;
        for (var i = 0; i < parsed.Count; i++)
        {
            var n = parsed.Name(i);
            if (n.Length == name.Length && Ascii.EqualsIgnoreCase(n.Of(head), name))
            {
                var value = Encoding.Latin1.GetString(parsed.Value(i).Of(head));
                if (one is null)
                {
                    one = value;
                }
                else
                {
                    (several ??= [one]).Add(value);
                }
            }
        }
        return several is not null ? new StringValues([.. several]) : one is not null ? new StringValues(one) : StringValues.Empty;
    }

    public override bool CanHaveBody => _parsed.Framing == RequestFraming.Chunked || (_parsed.Framing == RequestFraming.Length && _parsed.ContentLength > 0);

    public override long? ContentLength => _parsed.Framing == RequestFraming.Length ? _parsed.ContentLength : null;

    public override PipeReader BodyReader => Body;

    public override CancellationToken Aborted => _connection.ConnectionClosed;

    public override void Abort()
    {
        WasAborted = true;
        Closing = true;
        _connection.Abort(new ConnectionAbortedException("Fulcrum cut the connection: the response could not be completed"));
    }

    internal override void WriteHeaders(ref HeadWriter writer)
    {
        var head = _head.AsSpan();
        var parsed = _parsed;
        // Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
        var connection = -1;
        for (var i = 0; i < parsed.Count; i++)
        {
            if (Ascii.EqualsIgnoreCase(parsed.Name(i).Of(head), "Connection"u8))
            {
                connection = connection == -1 ? i : -2; // -2: several; looked up by name below
            }
        }
        for (var i = 0; i < parsed.Count; i++)
        {
            var name = parsed.Name(i).Of(head);
            var value = parsed.Value(i).Of(head);
            if (IsReplaced(name))
            {
                continue;
            }
            if (IsHopByHop(name) || (connection != -1 && NamedInConnection(head, parsed, name)))
            {
                if (name.Length == 2 && Ascii.EqualsIgnoreCase(name, "TE"u8) && Ascii.EqualsIgnoreCase(value.Trim(" \t"u8), "trailers"u8))
                {
                    writer.Ascii("TE: trailers\r\n"u8);
                }
                continue;
            }
            if (SeenBefore(head, parsed, i, name))
            {
                continue; // went out on the line of its first occurrence
            }
            writer.Ascii(name);
            writer.Ascii(": "u8);
            writer.Ascii(value);
            // Repeated fields go on one line, as SocketsHttpHandler sends them (cookies with "; ",
            // RFC 6265 §5.4), so both front ends send a backend the same head.
            for (var j = i + 1; j < parsed.Count; j++)
            {
                var other = parsed.Name(j);
                if (other.Length == name.Length && Ascii.EqualsIgnoreCase(other.Of(head), name))
                {
                    writer.Ascii(name.Length == 6 && Ascii.EqualsIgnoreCase(name, "Cookie"u8) ? "; "u8 : ", "u8);
                    writer.Ascii(parsed.Value(j).Of(head));
                }
            }
            writer.Ascii("\r\n"u8);
        }
    }

    private static bool SeenBefore(ReadOnlySpan<byte> head, RequestHead parsed, int index, ReadOnlySpan<byte> name)
    {
        for (var j = 0; j < index; j++)
        {
            var other = parsed.Name(j);
            if (other.Length == name.Length && Ascii.EqualsIgnoreCase(other.Of(head), name))
            {
                return true;
            }
        }
        return false;
    }

    private static bool NamedInConnection(ReadOnlySpan<byte> head, RequestHead parsed, ReadOnlySpan<byte> name)
    {
        for (var i = 0; i < parsed.Count; i++)
        {
            if (!Ascii.EqualsIgnoreCase(parsed.Name(i).Of(head), "Connection"u8))
            {
                continue;
            }
            var list = parsed.Value(i).Of(head);
            while (list.Length > 0)
            {
                var comma = list.IndexOf((byte)',');
                var item = (comma < 0 ? list : list[..comma]).Trim(" \t"u8);
                if (Ascii.EqualsIgnoreCase(item, name))
                {
                    return true;
                }
                if (comma < 0)
                {
                    break;
                }
                list = list[(comma + 1)..];
            }
        }
        return false;
    }

    /// <summary>The headers the upstream head writes itself (<see cref="Http1RequestHead"/>), by their bytes.</summary>
    private static bool IsReplaced(ReadOnlySpan<byte> name) =>
        name.Length switch
        {
            4 => Ascii.EqualsIgnoreCase(name, "Host"u8),
            10 => Ascii.EqualsIgnoreCase(name, "tracestate"u8),
            11 => Ascii.EqualsIgnoreCase(name, "traceparent"u8),
            12 => Ascii.EqualsIgnoreCase(name, "X-Request-Id"u8),
            14 => Ascii.EqualsIgnoreCase(name, "Content-Length"u8),
            15 => Ascii.EqualsIgnoreCase(name, "X-Forwarded-For"u8),
            16 => Ascii.EqualsIgnoreCase(name, "X-Forwarded-Host"u8),
            17 => Ascii.EqualsIgnoreCase(name, "X-Forwarded-Proto"u8),
            _ => false,
        };

    /// <summary>The hop-by-hop headers of <see cref="HeaderRules"/>, by their bytes.</summary>
    private static bool IsHopByHop(ReadOnlySpan<byte> name) =>
        name.Length switch
        {
            2 => Ascii.EqualsIgnoreCase(name, "TE"u8),
            7 => Ascii.EqualsIgnoreCase(name, "Trailer"u8) || Ascii.EqualsIgnoreCase(name, "Upgrade"u8),
            10 => Ascii.EqualsIgnoreCase(name, "Connection"u8) || Ascii.EqualsIgnoreCase(name, "Keep-Alive"u8),
            14 => Ascii.EqualsIgnoreCase(name, "Http2-Settings"u8),
            16 => Ascii.EqualsIgnoreCase(name, "Proxy-Connection"u8),
            17 => Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8),
            18 => Ascii.EqualsIgnoreCase(name, "Proxy-Authenticate"u8),
            19 => Ascii.EqualsIgnoreCase(name, "Proxy-Authorization"u8),
            _ => false,
        };

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

    /// <summary>The host part of an authority: "[v6]" kept whole, a port dropped.</summary>
    internal static string HostOf(string authority)
    {
        if (authority.StartsWith('['))
        {
            var close = authority.IndexOf(']', StringComparison.Ordinal);
            return close < 0 ? authority : authority[..(close + 1)];
        }
        var colon = authority.LastIndexOf(':');
        return colon < 0 ? authority : authority[..colon];
    }

    private static string? KnownMethod(ReadOnlySpan<byte> method) => method.Length switch
    {
        3 when method.SequenceEqual("GET"u8) => "GET",
        3 when method.SequenceEqual("PUT"u8) => "PUT",
        4 when method.SequenceEqual("POST"u8) => "POST",
        4 when method.SequenceEqual("HEAD"u8) => "HEAD",
        5 when method.SequenceEqual("PATCH"u8) => "PATCH",
        5 when method.SequenceEqual("TRACE"u8) => "TRACE",
        6 when method.SequenceEqual("DELETE"u8) => "DELETE",
        7 when method.SequenceEqual("OPTIONS"u8) => "OPTIONS",
        7 when method.SequenceEqual("CONNECT"u8) => "CONNECT",
        _ => null,
    };

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

    /// <summary>A string made from bytes, kept while the same bytes come again.</summary>
    private sealed class CachedText
    {
        private byte[] _bytes = new byte[64];
        private int _length = -1;

        public string? Value { get; private set; }

        public string Set(ReadOnlySpan<byte> bytes, Func<ReadOnlySpan<byte>, string?>? known)
        {
            if (Value is not null && bytes.Length == _length && bytes.SequenceEqual(_bytes.AsSpan(0, _length)))
            {
                return Value;
            }
            var text = known?.Invoke(bytes) ?? Encoding.Latin1.GetString(bytes);
            if (_bytes.Length < bytes.Length)
            {
                _bytes = new byte[Math.Max(bytes.Length, _bytes.Length * 2)];
            }
            bytes.CopyTo(_bytes);
            _length = bytes.Length;
            Value = text;
            return text;
        }
    }
}
