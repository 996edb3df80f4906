namespace Fulcrum.Forwarding;

/// <summary>How one attempt runs: its response timeout (the route's, or its per-try timeout), the
/// body kept for replay, and the statuses to hold back for a retry instead of relaying.</summary>
internal readonly record struct AttemptOptions(TimeSpan ResponseTimeout, RequestBodyBuffer? Replay, IReadOnlySet<int>? HoldStatuses, UpgradeRequest Upgrade = default);
