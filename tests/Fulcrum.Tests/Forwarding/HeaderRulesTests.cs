using Fulcrum.Forwarding;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace Fulcrum.Tests.Forwarding;

public class HeaderRulesTests
{
    [Theory]
    [InlineData("Connection")]
    [InlineData("keep-alive")]
    [InlineData("Transfer-Encoding")]
    [InlineData("Upgrade")]
    [InlineData("Proxy-Authorization")]
    [InlineData("TE")]
    [InlineData("Trailer")]
    public void IsHopByHop_FixedList(string name) => Assert.True(HeaderRules.IsHopByHop(name, StringValues.Empty));

    [Theory]
    [InlineData("X-Secret, keep-alive", "X-Secret", true)]
    [InlineData("keep-alive,  x-secret ", "X-Secret", true)]
    [InlineData("close", "X-Secret", false)]
    [InlineData("X-Secrets", "X-Secret", false)]
    public void IsHopByHop_HeadersNamedInConnection(string connection, string name, bool expected) =>
        Assert.Equal(expected, HeaderRules.IsHopByHop(name, new StringValues(connection)));

    [Fact]
    public void CopyRequestHeaders_DropsHopByHop_KeepsTeTrailers_MovesContentHeaders()
    {
        var context = new DefaultHttpContext();
        var headers = context.Request.Headers;
        headers.Connection = "X-Secret";
        headers["X-Secret"] = "s";
        headers["X-Kept"] = "k";
        headers["TE"] = "trailers";
        headers.ContentType = "text/plain";
        headers.Host = "example.com";
        using var message = new HttpRequestMessage(HttpMethod.Post, "http://backend/") { Content = new ByteArrayContent([]) };
        HeaderRules.CopyRequestHeaders(context.Request, message);
        Assert.False(message.Headers.Contains("X-Secret"));
        Assert.False(message.Headers.Contains("Connection"));
        Assert.Equal("k", message.Headers.GetValues("X-Kept").Single());
        Assert.Equal("trailers", message.Headers.GetValues("TE").Single());
        Assert.Equal("text/plain", message.Content.Headers.GetValues("Content-Type").Single());
        Assert.Null(message.Headers.Host);
    }
}
