using System.Text.Json;
using System.Text.Json.Serialization;

namespace Fulcrum.Health;

/// <summary>An admin override as kept in the state file.</summary>
public sealed record SavedOverride(
    [property: JsonPropertyName("pool")] string Pool,
    [property: JsonPropertyName("backend")] string Backend,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("reason")] string Reason,
    [property: JsonPropertyName("by")] string By,
    [property: JsonPropertyName("since")] DateTimeOffset Since,
    [property: JsonPropertyName("expires")] DateTimeOffset? Expires);

/// <summary>A backend registered or removed through the admin API, as kept in the state file.</summary>
public sealed record SavedBackend(
    [property: JsonPropertyName("pool")] string Pool,
    [property: JsonPropertyName("address")] string Address,
    [property: JsonPropertyName("weight")] int Weight,
    [property: JsonPropertyName("name")] string? Name);

/// <summary>Everything the state file keeps.</summary>
public sealed record SavedState(
    [property: JsonPropertyName("version")] int Version,
    [property: JsonPropertyName("overrides")] IReadOnlyList<SavedOverride> Overrides,
    [property: JsonPropertyName("added")] IReadOnlyList<SavedBackend>? Added,
    [property: JsonPropertyName("removed")] IReadOnlyList<SavedBackend>? Removed)
{
    public static SavedState Empty { get; } = new(1, [], [], []);
}

/// <summary>
/// The file that keeps runtime changes across restarts: admin overrides (a disabled backend stays
/// disabled, with its reason) and backends added or removed through the admin API. Written whole to a temporary file and renamed over the old one, so a crash mid-write
/// leaves the previous version, never half of one.
/// </summary>
public sealed class HealthStateFile(string path)
{
    private static readonly JsonSerializerOptions Options = new() { WriteIndented = true };

    public string Path { get; } = path;

    public void Save(SavedState state)
    {
        var temporary = Path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(stream, state, Options);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, Path, overwrite: true);
    }

    /// <summary>What the file keeps; empty when it does not exist. A damaged file is an error with its reason.</summary>
    public SavedState Load()
    {
        if (!File.Exists(Path))
        {
            return SavedState.Empty;
        }
        try
        {
            using var stream = File.OpenRead(Path);
            return JsonSerializer.Deserialize<SavedState>(stream, Options) ?? SavedState.Empty;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"the state file {Path} is damaged ({e.Message}); fix or remove it", e);
        }
    }
}
