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
internal sealed partial class FrontendExchange : ProxyExchange
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
        Tls = connection.Features.Get<Tls.TlsConnection>();
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

    public override string Scheme => Tls is null ? "http" : "https";

    public override string RouteHost => _routeHost!;

    public override string? Authority => _parsed.Host.Length > 0 ? _authority.Value : null;

    public override string Path => _path!;

    // Only targets whose path needs no decoding and has no dot segment are served here (the loop
    // hands the others to Kestrel), so the routed path goes upstream exactly as it came.
    public override string UpstreamTarget => _target.Value!;

    public override IPAddress? RemoteIp => _remote;

    public override Tls.TlsConnection? Tls { get; }

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
            if (Http1RequestHead.IsReplaced(name))
            {
                continue;
            }
            if (HeaderRules.IsHopByHop(name) || (connection != -1 && NamedInConnection(head, parsed, name)))
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
