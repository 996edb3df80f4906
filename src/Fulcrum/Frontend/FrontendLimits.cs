namespace Fulcrum.Frontend;

/// <summary>
/// What one request head may take on a listener served by Fulcrum's own HTTP/1.1 front end,
/// checked while parsing, before anything is routed: past <see cref="RequestLine"/> a 414, past
/// <see cref="Headers"/> bytes or <see cref="HeaderCount"/> lines a 431.
/// </summary>
internal sealed record FrontendLimits(int RequestLine, int Headers, int HeaderCount)
{
    public static FrontendLimits Default { get; } = new(8 * 1024, 32 * 1024, 100);
}
