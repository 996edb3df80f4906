namespace Fulcrum.Configuration;

/// <summary>One thing wrong with a configuration, and where it is.</summary>
public sealed record ConfigError(string File, int Line, int Column, string Message)
{
    /// <summary>The compiler-style form: <c>FILE:LINE:COL: message</c>.</summary>
    public override string ToString() => $"{File}:{Line}:{Column}: {Message}";
}

/// <summary>Thrown by the loader when a configuration has errors; carries all of them.</summary>
public sealed class ConfigException : Exception
{
    public ConfigException(IReadOnlyList<ConfigError> errors)
        : base(string.Join(Environment.NewLine, errors))
    {
        Errors = errors;
    }

    public ConfigException()
        : this([])
    {
    }

    public ConfigException(string message)
        : base(message)
    {
        Errors = [];
    }

    public ConfigException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errors = [];
    }

    public IReadOnlyList<ConfigError> Errors { get; }
}
