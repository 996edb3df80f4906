namespace Fulcrum.Frontend;

/// <summary>Where a request head's pieces lie in the bytes it was parsed from: an offset and a length.</summary>
internal readonly record struct Slice(int Start, int Length)
{
    public ReadOnlySpan<byte> Of(ReadOnlySpan<byte> head) => head.Slice(Start, Length);
}

/// <summary>How the request target is written (RFC 9112 §3.2).</summary>
internal enum TargetForm
{
    /// <summary><c>/path?query</c>: what a client sends to a server.</summary>
    Origin,

    /// <summary><c>http://host/path</c>: what a client sends to a forward proxy.</summary>
    Absolute,

    /// <summary><c>host:port</c>, with CONNECT.</summary>
    Authority,

    /// <summary><c>*</c>, with OPTIONS.</summary>
    Asterisk,
}

/// <summary>How the request's body is framed, decided once from its head (RFC 9112 §6.3).</summary>
internal enum RequestFraming
{
    /// <summary>No body: neither Content-Length nor Transfer-Encoding.</summary>
    None,

    /// <summary><see cref="RequestHead.ContentLength"/> bytes.</summary>
    Length,

    /// <summary><c>Transfer-Encoding: chunked</c>.</summary>
    Chunked,
}

/// <summary>
/// One parsed request head, as byte slices of the buffer it came from plus the framing the
/// parser decided. One instance per connection, reset for each request: parsing allocates nothing.
/// </summary>
internal sealed class RequestHead
{
    private Slice[] _names = new Slice[16];
    private Slice[] _values = new Slice[16];

    public Slice Method { get; set; }

    public Slice Target { get; set; }

    public TargetForm Form { get; set; }

    /// <summary>1 for HTTP/1.1, 0 for HTTP/1.0.</summary>
    public int Minor { get; set; }

    /// <summary>The value of the one Host header (empty slice: none, allowed in HTTP/1.0 only).</summary>
    public Slice Host { get; set; }

    public RequestFraming Framing { get; set; }

    /// <summary>The body's length when <see cref="Framing"/> is <see cref="RequestFraming.Length"/>.</summary>
    public long ContentLength { get; set; }

    /// <summary>The connection ends after this exchange: <c>Connection: close</c>, or HTTP/1.0 without <c>keep-alive</c>.</summary>
    public bool Close { get; set; }

    /// <summary>The request asks to switch protocols (<c>Upgrade</c> with <c>Connection: upgrade</c>).</summary>
    public bool Upgrade { get; set; }

    /// <summary>The request carries <c>Expect</c> (100-continue or another expectation).</summary>
    public bool Expect { get; set; }

    /// <summary>The number of header lines.</summary>
    public int Count { get; private set; }

    /// <summary>The length of the whole head, CRLF CRLF included.</summary>
    public int Length { get; set; }

    public Slice Name(int i) => _names[i];

    public Slice Value(int i) => _values[i];

    public void Reset()
    {
        Method = Target = Host = default;
        Form = TargetForm.Origin;
        Minor = 1;
        Framing = RequestFraming.None;
        ContentLength = 0;
        Close = Upgrade = Expect = false;
        Count = 0;
        Length = 0;
    }

    public void Add(Slice name, Slice value)
    {
        if (Count == _names.Length)
        {
            Array.Resize(ref _names, Count * 2);
            Array.Resize(ref _values, Count * 2);
        }
        _names[Count] = name;
        _values[Count] = value;
        Count++;
    }
}
