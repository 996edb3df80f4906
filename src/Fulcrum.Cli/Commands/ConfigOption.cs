using System.CommandLine;

namespace Fulcrum.Cli.Commands;

internal static class ConfigOption
{
    public static Option<FileInfo> Create() => new("--config", "-c")
    {
        Description = "Path to the configuration file (fulcrum.yaml)",
        Required = true,
    };
}
