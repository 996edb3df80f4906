using Fulcrum.Configuration;

namespace Fulcrum.Tests.Configuration;

public class DurationTests
{
    [Theory]
    [InlineData("250ms", 250)]
    [InlineData("10s", 10_000)]
    [InlineData("5m", 300_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData("1.5s", 1_500)]
    [InlineData(" 2s ", 2_000)]
    public void TryParse_WrittenDuration_GivesMilliseconds(string text, double ms)
    {
        Assert.True(Duration.TryParse(text, out var value, out var error), error);
        Assert.Equal(ms, value.TotalMilliseconds);
    }

    [Theory]
    [InlineData("30", "has no unit")]
    [InlineData("10 seconds", "not a duration")]
    [InlineData("5x", "unknown unit 'x'")]
    [InlineData("", "empty")]
    [InlineData("ms", "not a duration")]
    public void TryParse_BadDuration_SaysWhy(string text, string expected)
    {
        Assert.False(Duration.TryParse(text, out _, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(250, "250ms")]
    [InlineData(10_000, "10s")]
    [InlineData(300_000, "5m")]
    [InlineData(3_600_000, "1h")]
    [InlineData(90_000, "90s")]
    [InlineData(86_400_000, "1d")]
    public void Format_RoundTrips(double ms, string expected) =>
        Assert.Equal(expected, Duration.Format(TimeSpan.FromMilliseconds(ms)));
}
