using System.CommandLine;
using Fulcrum.Cli.Commands;

namespace Fulcrum.Cli;

internal static class Program
{
    public static Task<int> Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Parses and runs one command; tests call this with their own writers.</summary>
    internal static Task<int> Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = new RootCommand("Fulcrum: a load balancer and reverse proxy that says why traffic failed.")
        {
            RunCommand.Create(output, error),
            CheckCommand.Create(output, error),
            DemoCommand.Create(output, error),
            VersionCommand.Create(output),
        };
        foreach (var command in AdminCommands.Create(output, error))
        {
            root.Subcommands.Add(command);
        }
        var configuration = new InvocationConfiguration
        {
            Output = output,
            Error = error,
            // Fulcrum handles SIGINT and SIGTERM itself, to drain rather than die.
            ProcessTerminationTimeout = null,
        };
        return root.Parse(args).InvokeAsync(configuration);
    }
}
