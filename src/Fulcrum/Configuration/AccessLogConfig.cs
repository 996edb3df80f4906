namespace Fulcrum.Configuration;

/// <summary>Where and how the access log is written: one line per request.</summary>
public sealed record AccessLogConfig(bool Enabled, string Path, string Format)
{
    public const string Stdout = "stdout";
    public const string Stderr = "stderr";
    public const string JsonFormat = "json";
    public const string CombinedFormat = "combined";

    public static AccessLogConfig Default { get; } = new(true, Stdout, JsonFormat);
}
