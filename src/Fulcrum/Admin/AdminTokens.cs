using System.Security.Cryptography;
using System.Text;

namespace Fulcrum.Admin;

/// <summary>
/// The tokens that may use the admin API, from <c>admin.token_file</c>: one per line, written
/// <c>name:token</c> (the name appears in audit events) or a bare token; blank lines and lines
/// starting with <c>#</c> are skipped. Tokens are compared in constant time.
/// </summary>
public sealed class AdminTokens
{
    private readonly (string Name, byte[] Token)[] _tokens;

    private AdminTokens((string, byte[])[] tokens) => _tokens = tokens;

    /// <summary>No tokens: the API is open (a loopback admin address without a token file).</summary>
    public static AdminTokens None { get; } = new([]);

    public bool Required => _tokens.Length > 0;

    public static AdminTokens Load(string path)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read admin.token_file {path}: {e.Message}", e);
        }
        var tokens = new List<(string, byte[])>();
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var (name, token) = colon > 0 ? (line[..colon].Trim(), line[(colon + 1)..].Trim()) : ($"token-{i + 1}", line);
            if (token.Length < 16)
            {
                throw new IOException($"admin.token_file {path}:{i + 1}: the token of '{name}' is shorter than 16 characters; use a long random one (openssl rand -hex 32)");
            }
            tokens.Add((name, Encoding.UTF8.GetBytes(token)));
        }
        if (tokens.Count == 0)
        {
            throw new IOException($"admin.token_file {path} holds no token");
        }
        return new AdminTokens([.. tokens]);
    }

    /// <summary>The name of the token in <c>Authorization: Bearer TOKEN</c>, or null when it is missing or wrong.</summary>
    public string? Authenticate(string? authorization)
    {
        const string Bearer = "Bearer ";
        if (authorization is null || !authorization.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var given = Encoding.UTF8.GetBytes(authorization[Bearer.Length..].Trim());
        string? match = null;
        // Every token is compared, each in constant time, so timing tells nothing about which matched.
        foreach (var (name, token) in _tokens)
        {
            if (CryptographicOperations.FixedTimeEquals(given, token))
            {
                match ??= name;
            }
        }
        return match;
    }
}
