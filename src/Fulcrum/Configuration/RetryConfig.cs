namespace Fulcrum.Configuration;

/// <summary>
/// When a failed attempt is tried again, as written on a route or a pool (null fields: not set
/// here). See docs/resilience.md for the safety rules.
/// </summary>
public sealed record RetryConfig(
    int? Attempts,
    EquatableList<string>? On,
    TimeSpan? PerTryTimeout,
    TimeSpan? BackoffBase,
    TimeSpan? BackoffMax,
    string? IdempotencyHeader,
    long? MaxBody)
{
    public static RetryConfig Unset { get; } = new(null, null, null, null, null, null, null);

    public const string ConnectFailure = "connect_failure";
    public const string ConnectTimeout = "connect_timeout";
    public const string Reset = "reset";
    public const string ResponseTimeout = "response_timeout";

    /// <summary>The failure conditions <c>on</c> may name, besides status codes.</summary>
    public static IReadOnlyList<string> Conditions { get; } = [ConnectFailure, ConnectTimeout, Reset, ResponseTimeout];
}

/// <summary>A route's retry settings after its pool's and the defaults are applied.</summary>
public sealed record ResolvedRetry(
    int Attempts,
    IReadOnlySet<string> On,
    IReadOnlySet<int> OnStatus,
    TimeSpan? PerTryTimeout,
    TimeSpan BackoffBase,
    TimeSpan BackoffMax,
    string IdempotencyHeader,
    long MaxBody)
{
    public static ResolvedRetry Resolve(RetryConfig route, RetryConfig pool)
    {
        var on = route.On ?? pool.On ?? new EquatableList<string>([RetryConfig.ConnectFailure, RetryConfig.ConnectTimeout, RetryConfig.Reset]);
        return new ResolvedRetry(
            route.Attempts ?? pool.Attempts ?? 1,
            on.Where(o => !int.TryParse(o, out _)).ToHashSet(StringComparer.Ordinal),
            on.Where(o => int.TryParse(o, out _)).Select(int.Parse).ToHashSet(),
            route.PerTryTimeout ?? pool.PerTryTimeout,
            route.BackoffBase ?? pool.BackoffBase ?? TimeSpan.FromMilliseconds(25),
            route.BackoffMax ?? pool.BackoffMax ?? TimeSpan.FromMilliseconds(250),
            route.IdempotencyHeader ?? pool.IdempotencyHeader ?? "Idempotency-Key",
            route.MaxBody ?? pool.MaxBody ?? 64 * 1024);
    }
}

/// <summary>How many retries a pool allows at once: a share of its requests in flight, with a floor.</summary>
public sealed record RetryBudgetConfig(int Percent, int MinConcurrent)
{
    public static RetryBudgetConfig Default { get; } = new(20, 3);
}
