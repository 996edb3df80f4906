using Fulcrum.Configuration;

namespace Fulcrum.Tests.Configuration;

public class HostPortTests
{
    [Theory]
    [InlineData("127.0.0.1:8080", "127.0.0.1", 8080)]
    [InlineData("[::1]:9000", "::1", 9000)]
    [InlineData("backend.internal:80", "backend.internal", 80)]
    [InlineData("*:8080", "*", 8080)]
    [InlineData("localhost:1", "localhost", 1)]
    public void TryParse_GoodAddress_SplitsHostAndPort(string text, string host, int port)
    {
        Assert.True(HostPort.TryParse(text, false, out var value, out var error), error);
        Assert.Equal(host, value!.Host);
        Assert.Equal(port, value.Port);
    }

    [Theory]
    [InlineData("127.0.0.1", "has no port")]
    [InlineData("127.0.0.1:http", "bad port")]
    [InlineData("127.0.0.1:70000", "bad port")]
    [InlineData("127.0.0.1:0", "bad port")]
    [InlineData("::1:80", "in brackets")]
    [InlineData("bad host:80", "neither an IP address nor a host name")]
    [InlineData(":80", "no host")]
    public void TryParse_BadAddress_SaysWhy(string text, string expected)
    {
        Assert.False(HostPort.TryParse(text, false, out _, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void ToString_Ipv6_UsesBrackets()
    {
        Assert.True(HostPort.TryParse("[::1]:9000", false, out var value, out _));
        Assert.Equal("[::1]:9000", value!.ToString());
    }
}
