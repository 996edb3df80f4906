using Fulcrum.Forwarding;

namespace Fulcrum.Hosting;

/// <summary>Request ids: the client's <c>X-Request-Id</c> when it sent a sane one, else a new random one.</summary>
internal static class RequestIds
{
    private const int MaxLength = 128;

    /// <summary>The client's X-Request-Id when it sent a sane one; null when a new one is to be made.</summary>
    public static string? Given(ProxyExchange request)
    {
        var given = request.Header("X-Request-Id");
        if (given.Count == 1 && given[0] is { Length: > 0 and <= MaxLength } id && IsPrintable(id))
        {
            return id;
        }
        return null;
    }

    /// <summary>The length of an id Fulcrum makes.</summary>
    public const int NewLength = 16;

    /// <summary>Writes a new id into <paramref name="text"/> (<see cref="NewLength"/> characters).</summary>
    public static void New(Span<char> text)
    {
#pragma warning disable CA5394 // an id to correlate lines, not a secret
        var value = (ulong)Random.Shared.NextInt64();
#pragma warning restore CA5394
        value.TryFormat(text, out _, "x16", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>16 hex digits from a 64-bit random number: unique enough to grep for, cheap to make.</summary>
    public static string New()
    {
#pragma warning disable CA5394 // an id to correlate lines, not a secret
        var value = (ulong)Random.Shared.NextInt64();
#pragma warning restore CA5394
        return string.Create(16, value, static (span, v) => v.TryFormat(span, out _, "x16", System.Globalization.CultureInfo.InvariantCulture));
    }

    private static bool IsPrintable(string s)
    {
        foreach (var c in s)
        {
            if (c is < '!' or > '~')
            {
                return false;
            }
        }
        return true;
    }
}
