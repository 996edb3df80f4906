namespace Fulcrum.Health;

/// <summary>What an admin decided about a backend.</summary>
public enum OverrideKind
{
    Disable,
    Drain,
    ForceHealthy,
}

/// <summary>
/// An admin decision with its reason, who made it and when it lapses (null: never). It outranks
/// passive and active health, and is kept in the state file across restarts.
/// </summary>
public sealed record AdminOverride(OverrideKind Kind, string Reason, string By, DateTimeOffset Since, DateTimeOffset? Expires)
{
    public bool IsActive(DateTimeOffset now) => Expires is not { } expires || now < expires;

    public static string Name(OverrideKind kind) => kind switch
    {
        OverrideKind.Disable => "disable",
        OverrideKind.Drain => "drain",
        OverrideKind.ForceHealthy => "force_healthy",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public static OverrideKind? Parse(string name) => name switch
    {
        "disable" => OverrideKind.Disable,
        "drain" => OverrideKind.Drain,
        "force_healthy" => OverrideKind.ForceHealthy,
        _ => null,
    };
}
