using System.Text;
using Fulcrum.Forwarding;
using Fulcrum.Frontend;

namespace Fulcrum.Tests.Frontend;

/// <summary>Each rule of the strict request head parser: what it accepts, what it refuses and with which code.</summary>
public sealed class RequestHeadParserTests
{
    private static (ParseResult Result, RequestHead Head, Refusal Refusal, byte[] Bytes) Parse(string text, FrontendLimits? limits = null)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        var head = new RequestHead();
        var result = RequestHeadParser.Parse(bytes, limits ?? FrontendLimits.Default, head, out var refusal);
        return (result, head, refusal, bytes);
    }

    private static string Text(byte[] bytes, Slice slice) => Encoding.Latin1.GetString(slice.Of(bytes));

    [Fact]
    public void A_plain_GET_is_parsed_into_slices_of_its_bytes()
    {
        var (result, head, _, bytes) = Parse("GET /a/b?c=d HTTP/1.1\r\nHost: api.example.com:8080\r\nX-Thing:  spaced value \t\r\nAccept: */*\r\n\r\nNEXT");
        Assert.Equal(ParseResult.Done, result);
        Assert.Equal("GET", Text(bytes, head.Method));
        Assert.Equal("/a/b?c=d", Text(bytes, head.Target));
        Assert.Equal(TargetForm.Origin, head.Form);
        Assert.Equal(1, head.Minor);
        Assert.Equal("api.example.com:8080", Text(bytes, head.Host));
        Assert.Equal(3, head.Count);
        Assert.Equal("X-Thing", Text(bytes, head.Name(1)));
        Assert.Equal("spaced value", Text(bytes, head.Value(1)));
        Assert.Equal(RequestFraming.None, head.Framing);
        Assert.False(head.Close);
        Assert.Equal(bytes.Length - 4, head.Length); // "NEXT" is the next request's
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\nHost: a")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n\r")]
    [InlineData("GET / HTT")]
    [InlineData("")]
    public void A_head_not_yet_whole_asks_for_more(string text) =>
        Assert.Equal(ParseResult.Incomplete, Parse(text).Result);

    [Theory]
    [InlineData("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", "Length", 12)]
    [InlineData("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n", "Length", 12)]
    [InlineData("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", "Chunked", 0)]
    [InlineData("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "Length", 0)]
    public void Framing_is_decided_from_the_head(string text, string framing, long length)
    {
        var (result, head, _, _) = Parse(text);
        Assert.Equal(ParseResult.Done, result);
        Assert.Equal(framing, head.Framing.ToString());
        Assert.Equal(length, head.ContentLength);
    }

    [Theory]
    [InlineData("GET / HTTP/1.0\r\n\r\n", true)]
    [InlineData("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nConnection: TE, Close\r\n\r\n", true)]
    public void Whether_the_connection_closes_after_the_exchange(string text, bool close) =>
        Assert.Equal(close, Parse(text).Head.Close);

    [Fact]
    public void Upgrade_expect_and_target_forms_are_noted()
    {
        var upgrade = Parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").Head;
        Assert.True(upgrade.Upgrade);
        Assert.True(Parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").Head.Expect);
        Assert.Equal(TargetForm.Absolute, Parse("GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n").Head.Form);
        Assert.Equal(TargetForm.Asterisk, Parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").Head.Form);
        Assert.Equal(TargetForm.Authority, Parse("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").Head.Form);
        Assert.Equal(ParseResult.Done, Parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").Result); // empty lines before: passed over
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "control character")]
    [InlineData("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "more than one space")]
    [InlineData("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "HTTP/1.1 or HTTP/1.0")]
    [InlineData("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP/1.1 or HTTP/1.0")]
    [InlineData("GET / http/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 or HTTP/1.0")]
    [InlineData("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "method")]
    [InlineData("GET /a\u0001 HTTP/1.1\r\nHost: a\r\n\r\n", "control character")]
    [InlineData("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", "neither a path")]
    [InlineData("GET * HTTP/1.1\r\nHost: a\r\n\r\n", "only for OPTIONS")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", "white space before its colon")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX(A: 1\r\n\r\n", "not a token")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", "empty name")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", "no colon")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", "obs-fold")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u0000b\r\n\r\n", "control character")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u007fb\r\n\r\n", "control character")]
    [InlineData("GET / HTTP/1.1\r\n\r\n", "must have a Host")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host")]
    [InlineData("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "not a host")]
    [InlineData("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "not a host")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", "digits only")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", "digits only")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", "digits only")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", "digits only")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", "digits only")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", "disagree")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "disagree")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", "is a list")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000,1000\r\n\r\n", "is a list")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n", "disagree")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", "not a registered")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\u00a0\r\n\r\n", "not a registered")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;ext=1\r\n\r\n", "not a registered")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both Transfer-Encoding and Content-Length")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "more than once")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "more than once")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", "empty coding")]
    [InlineData("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0")]
    public void Malformed_or_ambiguous_heads_are_refused_with_400(string text, string said)
    {
        var (result, _, refusal, _) = Parse(text);
        Assert.Equal(ParseResult.Refused, result);
        Assert.Equal(FulcrumError.BadRequest, refusal.Error);
        Assert.Contains(said, refusal.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n")]
    public void A_transfer_coding_other_than_chunked_is_501(string text)
    {
        var (result, _, refusal, _) = Parse(text);
        Assert.Equal(ParseResult.Refused, result);
        Assert.Equal(FulcrumError.UnsupportedTransferEncoding, refusal.Error);
        Assert.Equal(501, ErrorCodes.Status(refusal.Error));
    }

    [Fact]
    public void Limits_give_414_and_431_before_the_head_is_whole()
    {
        var limits = new FrontendLimits(RequestLine: 64, Headers: 128, HeaderCount: 3);
        var longLine = Parse("GET /" + new string('a', 100), limits);
        Assert.Equal(ParseResult.Refused, longLine.Result);
        Assert.Equal(FulcrumError.RequestLineTooLong, longLine.Refusal.Error);
        Assert.Equal(414, ErrorCodes.Status(longLine.Refusal.Error));

        var bigHeaders = Parse("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + new string('b', 200), limits);
        Assert.Equal(FulcrumError.HeadersTooLarge, bigHeaders.Refusal.Error);
        Assert.Equal(431, ErrorCodes.Status(bigHeaders.Refusal.Error));

        var many = Parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits);
        Assert.Equal(FulcrumError.HeadersTooLarge, many.Refusal.Error);

        Assert.Equal(ParseResult.Done, Parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", limits).Result);
    }
}
