using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Integration;

/// <summary>
/// Requests whose framing a backend could read differently get 400 and a closed connection, and
/// never reach a backend: nothing sent after them on the connection can be smuggled through.
/// </summary>
public class MalformedRequestTests
{
    // A second request pipelined behind the bad one: if it were answered, the connection's
    // framing would have been trusted after an ambiguity.
    private const string Smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

    public static TheoryData<string, string, int> Cases => new()
    {
        { "both Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding before Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding: chunked, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding: xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding: gzip, a coding Fulcrum does not implement", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501 },
        { "Content-Length: 3, 3", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400 },
        { "Transfer-Encoding: chunked with a control character", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding with a space before the colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { "two different Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\nabc", 400 },
        { "Content-Length not a number", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\nabc", 400 },
        { "Content-Length overflowing 64 bits", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\nabc", 400 },
        { "control character in a header value", "GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0001b\r\n\r\n", 400 },
        { "NUL in a header name", "GET / HTTP/1.1\r\nHost: x\r\nX-B\0ad: ab\r\n\r\n", 400 },
        { "bare LF inside a header value", "GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\nContent-Length: 5\r\n\r\n", 400 },
        { "obsolete line folding", "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400 },
        { "no Host header", "GET / HTTP/1.1\r\n\r\n", 400 },
        { "two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
        { "a space inside the request target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "a bad method", "GE\u0001T / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "bare LF ending a header line", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400 },
        { "garbage request line", "HELLO\r\n\r\n", 400 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task MalformedRequest_Gets400_ConnectionClosed_BackendUntouched(string what, string request, int status)
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint, request + Smuggled, idleMs: 3000);
        Assert.True(response.Status == status, $"{what}: expected {status}, got:\n{response.Text}");
        Assert.True(response.Closed, $"{what}: the connection was left open");
        Assert.DoesNotContain("HTTP/1.1 200", response.Text, StringComparison.Ordinal);
        Assert.Equal(0, backend.Count);
    }

    [Theory]
    [InlineData("zz")]
    [InlineData("-1")]
    [InlineData("ffffffffffffffffff")]
    public async Task BadChunkSize_Gets400_AndTheConnectionIsClosed(string chunkSize)
    {
        await using var backend = await TestBackend.StartAsync("b", async c => await new StreamReader(c.Request.Body).ReadToEndAsync());
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint,
            $"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunkSize}\r\nhello\r\n0\r\n\r\n" + Smuggled, idleMs: 3000);
        Assert.Equal(400, response.Status);
        Assert.True(response.Closed);
        Assert.DoesNotContain("smuggled", string.Concat(backend.Seen.Select(s => s.PathAndQuery)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task OversizedHeaders_Get431_AndTheConnectionIsClosed()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint, $"GET / HTTP/1.1\r\nHost: x\r\nX-Big: {new string('a', 64 * 1024)}\r\n\r\n" + Smuggled, idleMs: 3000);
        // 431 Request Header Fields Too Large (RFC 6585) is the precise 4xx for this.
        Assert.Equal(431, response.Status);
        Assert.True(response.Closed);
        Assert.Equal(0, backend.Count);
    }

    [Fact]
    public async Task OversizedRequestLine_Gets414_AndTheConnectionIsClosed()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint, $"GET /{new string('a', 20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n" + Smuggled, idleMs: 3000);
        Assert.Equal(414, response.Status);
        Assert.True(response.Closed);
        Assert.Equal(0, backend.Count);
    }

    [Fact]
    public async Task GuardRefusal_SaysWhyInTheBody()
    {
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        Assert.Equal("bad_request", response.Header("Fulcrum-Error"));
        Assert.Contains("Transfer-Encoding names chunked more than once", response.Text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gzip, chunked")]
    [InlineData("deflate, identity, chunked")]
    public async Task OtherTransferCodings_Get501_AndTheConnectionIsClosed(string codings)
    {
        // RFC 9112 §6.1: a transfer coding the server does not implement gets 501. Fulcrum re-frames
        // bodies, so it cannot pass gzip transfer coding on; nginx answers the same way.
        await using var backend = await TestBackend.StartAsync();
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint, $"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {codings}\r\n\r\n0\r\n\r\n" + Smuggled, idleMs: 3000);
        Assert.Equal(501, response.Status);
        Assert.Equal("unsupported_transfer_encoding", response.Header("Fulcrum-Error"));
        Assert.True(response.Closed);
        Assert.Equal(0, backend.Count);
    }

    /// <summary>
    /// The same Content-Length on two lines is that one length (RFC 9110 §8.6 allows it, issue 21
    /// asks for it; a list in one field is refused, as the desync corpus requires): the body is
    /// read as 3 bytes, and the request after it is a request of its own, not smuggled.
    /// </summary>
    [Fact]
    public async Task IdenticalContentLengths_AreOneLength()
    {
        await using var backend = await TestBackend.StartAsync("b", async c => await Microsoft.AspNetCore.Http.HttpResponseWritingExtensions.WriteAsync(c.Response, c.Request.Path + ":" + await new StreamReader(c.Request.Body).ReadToEndAsync()));
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", idleMs: 1000);
        Assert.Contains("/a:abc", response.Text, StringComparison.Ordinal);
        Assert.Contains("/b:", response.Text, StringComparison.Ordinal);
        Assert.Equal(["/a", "/b"], backend.Seen.Select(s => s.PathAndQuery).ToArray());
    }

    [Fact]
    public async Task ObsTextHeaderValue_PassesThroughByteForByte()
    {
        await using var backend = await TestBackend.StartAsync("b", async c =>
        {
            c.Response.Headers["X-Echo"] = c.Request.Headers["X-Obs"];
            await Microsoft.AspNetCore.Http.HttpResponseWritingExtensions.WriteAsync(c.Response, "ok");
        }, latin1Headers: true);
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint, "GET / HTTP/1.1\r\nHost: x\r\nX-Obs: caf\u00e9\u0085x\r\nConnection: close\r\n\r\n");
        Assert.Equal(200, response.Status);
        Assert.Equal("caf\u00e9\u0085x", response.Header("X-Echo"));
    }

    [Fact]
    public async Task WellFormedPipelinedRequests_AreAllAnswered()
    {
        await using var backend = await TestBackend.StartAsync("b", async c => await Microsoft.AspNetCore.Http.HttpResponseWritingExtensions.WriteAsync(c.Response, c.Request.Path));
        await using var proxy = await TestProxy.StartAsync("round_robin", backend);
        var response = await RawHttp.SendAsync(proxy.EndPoint,
            "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /two HTTP/1.1\r\nHost: x\r\n\r\nPOST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", idleMs: 1000);
        Assert.Equal(3, response.Text.Split("HTTP/1.1 200 OK").Length - 1);
        Assert.Equal(["/one", "/two", "/three"], backend.Seen.Select(s => s.PathAndQuery).ToArray());
    }
}
