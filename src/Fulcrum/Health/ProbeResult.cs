namespace Fulcrum.Health;

/// <summary>
/// The outcome of one active probe. <see cref="Detail"/> is a sentence a person can act on:
/// "health check got 404 from GET /health/ready, expected 200-399", "connection refused".
/// </summary>
public sealed record ProbeResult(bool Success, string Detail, int? Status, TimeSpan Latency, DateTimeOffset At);
