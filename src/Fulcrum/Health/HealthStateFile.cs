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

/// <summary>
/// The file that keeps admin overrides across restarts: a disabled backend stays disabled, with
/// its reason. Written whole to a temporary file and renamed over the old one, so a crash mid-write
/// leaves the previous version, never half of one.
/// </summary>
public sealed class HealthStateFile(string path)
{
    private static readonly JsonSerializerOptions Options = new() { WriteIndented = true };

    public string Path { get; } = path;

    private sealed record Document(
        [property: JsonPropertyName("version")] int Version,
        [property: JsonPropertyName("overrides")] IReadOnlyList<SavedOverride> Overrides);

    public void Save(IReadOnlyList<SavedOverride> overrides)
    {
        var temporary = Path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(stream, new Document(1, overrides), Options);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, Path, overwrite: true);
    }

    /// <summary>The overrides in the file; none when it does not exist. A damaged file is an error with its reason.</summary>
    public IReadOnlyList<SavedOverride> Load()
    {
        if (!File.Exists(Path))
        {
            return [];
        }
        try
        {
            using var stream = File.OpenRead(Path);
            return JsonSerializer.Deserialize<Document>(stream, Options)?.Overrides ?? [];
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"the state file {Path} is damaged ({e.Message}); fix or remove it", e);
        }
    }
}
