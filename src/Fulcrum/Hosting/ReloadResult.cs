using Fulcrum.Runtime;

namespace Fulcrum.Hosting;

/// <summary>
/// The outcome of one reload: applied with what changed, or refused with every error as
/// <c>FILE:LINE:COL: message</c> (the running configuration then stays as it was).
/// </summary>
/// <param name="Success">True when the new configuration is serving.</param>
/// <param name="Trigger">What asked for it: <c>file</c>, <c>SIGHUP</c>, or <c>api:NAME</c>.</param>
/// <param name="At">When it finished.</param>
/// <param name="Errors">Why it was refused; empty on success.</param>
/// <param name="Changes">What changed; null when refused.</param>
/// <param name="LoadMs">Reading, parsing and validating the file.</param>
/// <param name="ApplyMs">From a valid configuration to the new snapshot serving (listeners bound, state diffed).</param>
public sealed record ReloadResult(bool Success, string Trigger, DateTimeOffset At, IReadOnlyList<string> Errors, ReloadChanges? Changes, double LoadMs, double ApplyMs);

/// <summary>The configuration in force and how reloads have gone, for the admin API and <c>fulcrum status</c>.</summary>
public sealed record ConfigStatus(string? File, DateTimeOffset AppliedAt, long Reloads, long Failures, ReloadResult? LastReload);
