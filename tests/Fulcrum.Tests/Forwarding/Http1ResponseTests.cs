using System.Text;
using Fulcrum.Forwarding.Http1;

namespace Fulcrum.Tests.Forwarding;

/// <summary>The upstream pool's response head parser: framing decided once, and nothing guessed.</summary>
public class Http1ResponseTests
{
    private static (Http1Response Response, int Used) Parse(string head, bool headRequest = false)
    {
        var response = new Http1Response();
        var used = response.TryParse(Encoding.Latin1.GetBytes(head), headRequest);
        return (response, used);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", "Length", true, 13)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 13, 13\r\n\r\n", "Length", true, 13)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "Chunked", true, -1)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Chunked", true, -1)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "UntilClose", false, -1)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "Chunked", false, -1)]
    [InlineData("HTTP/1.1 200 OK\r\n\r\n", "UntilClose", false, -1)]
    [InlineData("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", "None", true, -1)]
    [InlineData("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "None", true, -1)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", "Length", false, 5)]
    [InlineData("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", "Length", false, 5)]
    [InlineData("HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n", "Length", true, 5)]
    [InlineData("HTTP/1.1 200 OK\nContent-Length: 2\n\n", "Length", true, 2)]
    [InlineData("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "Length", true, 0)]
    public void Framing_and_keep_alive_follow_RFC_9112(string head, string expected, bool keepAlive, long length)
    {
        var framing = Enum.Parse<BodyFraming>(expected);
        var (response, used) = Parse(head);
        Assert.Equal(Encoding.Latin1.GetByteCount(head), used);
        Assert.Equal(framing, response.Framing);
        Assert.Equal(keepAlive, response.KeepAlive);
        if (framing == BodyFraming.Length)
        {
            Assert.Equal(length, response.ContentLength);
        }
    }

    [Fact]
    public void A_HEAD_response_has_no_body_whatever_its_length_says()
    {
        var (response, _) = Parse("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", headRequest: true);
        Assert.Equal(BodyFraming.None, response.Framing);
        Assert.True(response.KeepAlive);
        Assert.Contains(response.Headers, h => h.Key == "Content-Length" && h.Value == "1234");
    }

    [Fact]
    public void An_incomplete_head_takes_nothing_and_the_rest_of_the_buffer_is_left()
    {
        Assert.Equal(0, Parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n").Used);
        Assert.Equal(0, Parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r").Used);
        var (_, used) = Parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1");
        Assert.Equal("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".Length, used);
    }

    [Fact]
    public void Headers_keep_their_order_values_are_latin1_and_common_names_are_shared_strings()
    {
        var (response, _) = Parse("HTTP/1.1 200 OK\r\ncontent-type:  text/plain \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Cafe: caf\u00e9\r\nContent-Length: 0\r\n\r\n");
        Assert.Equal(
            ["Content-Type=text/plain", "Set-Cookie=a=1", "Set-Cookie=b=2", "X-Cafe=caf\u00e9", "Content-Length=0"],
            response.Headers.Select(h => $"{h.Key}={h.Value}"));
        Assert.Same("Content-Type", response.Headers[0].Key);
    }

    [Theory]
    [InlineData("HTTP/2 200 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 20 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 2000 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 099 Low\r\n\r\n")]
    [InlineData("ICY 200 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nX-Smuggle : 1\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nX-Caf\u00e9: 1\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: a\u0000b\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n")]
    public void A_head_that_breaks_a_rule_is_an_invalid_response_never_a_guess(string head)
    {
        var e = Assert.Throws<UpstreamProtocolException>(() => Parse(head));
        Assert.StartsWith("the backend sent an invalid response", e.Message, StringComparison.Ordinal);
        Assert.Equal(HttpRequestError.InvalidResponse, e.HttpRequestError);
    }

    [Fact]
    public void Trailers_are_parsed_and_framing_ones_dropped()
    {
        var response = new Http1Response();
        Assert.Equal(2, response.TryParseTrailers("\r\nrest"u8));
        Assert.Empty(response.Trailers);
        Assert.Equal(0, response.TryParseTrailers("Grpc-Status: 0\r\n"u8));
        var trailers = "grpc-status: 0\r\nContent-Length: 9\r\ngrpc-message: fine\r\n\r\n"u8;
        Assert.Equal(trailers.Length, response.TryParseTrailers(trailers));
        Assert.Equal(["grpc-status=0", "grpc-message=fine"], response.Trailers.Select(h => $"{h.Key}={h.Value}"));
    }

    [Fact]
    public void A_connection_s_next_response_reuses_equal_strings_and_never_a_stale_one()
    {
        var response = new Http1Response();
        response.TryParse(Encoding.Latin1.GetBytes("HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 21 Nov 2026 07:00:00 GMT\r\nX-Thing: a\r\nContent-Length: 13\r\n\r\n"), false);
        var first = response.Headers.ToArray();

        // Same lines but a new Date, a value the same length as before, a name in another case,
        // and a line more: only the equal bytes give the earlier strings.
        response.TryParse(Encoding.Latin1.GetBytes("HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 21 Nov 2026 07:00:01 GMT\r\nx-thing: b\r\nContent-Length: 13\r\nVary: \u00e9\r\n\r\n"), false);
        var second = response.Headers;
        Assert.Equal(
            ["Server: nginx", "Date: Sat, 21 Nov 2026 07:00:01 GMT", "x-thing: b", "Content-Length: 13", "Vary: \u00e9"],
            second.Select(h => $"{h.Key}: {h.Value}"));
        Assert.Same(first[0].Key, second[0].Key);
        Assert.Same(first[0].Value, second[0].Value);
        Assert.Same(first[3].Value, second[3].Value);
        Assert.Equal(13, response.ContentLength);

        // A shorter answer after a longer one: the lines left over from before are not carried in.
        response.TryParse(Encoding.Latin1.GetBytes("HTTP/1.1 204 No Content\r\nServer: nginx\r\n\r\n"), false);
        Assert.Equal(["Server: nginx"], response.Headers.Select(h => $"{h.Key}: {h.Value}"));
    }
}
