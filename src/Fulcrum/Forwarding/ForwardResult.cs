namespace Fulcrum.Forwarding;

/// <summary>
/// The outcome of one attempt to forward a request to one backend. Expected failures are values,
/// not exceptions: the pipeline reads this to decide whether to try another backend and what to tell
/// the client, and later stages (passive health, retries) read the same value.
/// </summary>
public readonly record struct ForwardResult(FulcrumError Error, string? Detail, int UpstreamStatus, bool RequestBodyStarted, bool ResponseStarted)
{
    public bool Succeeded => Error == FulcrumError.None;

    /// <summary>
    /// A response whose status the attempt was asked to hold rather than relay (a retryable
    /// status): the pipeline retries and disposes it, or relays it when no retry is allowed.
    /// </summary>
    public HeldResponse? Held { get; init; }

    /// <summary>
    /// A connect-timeout whose request may still have been sent: the response timer ran out while
    /// a connection was being opened, but the handler may have sent the request on another pooled
    /// connection meanwhile. Only a replay-safe request may be retried after it.
    /// </summary>
    public bool MaybeSent { get; init; }

    public static ForwardResult Success(int status) => new(FulcrumError.None, null, status, false, true);
}
