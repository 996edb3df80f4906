using System.CommandLine;
using Fulcrum.Cli.Commands;

namespace Fulcrum.Cli;

internal static class Program
{
    /// <summary>The .NET socket setting Fulcrum runs with unless the environment says otherwise.</summary>
    internal const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static Task<int> Main(string[] args)
    {
        // Run socket completions on the socket engine's thread instead of handing each one to
        // the thread pool: a proxied request crosses sockets four times, and on a small machine
        // every hand-off is a context switch. Measured +18-21% requests/s and -12-15% CPU per
        // request (docs/performance.md). Read by the runtime when the first socket is used, so
        // set before anything opens one; an operator's own value (0 turns it off) is kept.
        if (Environment.GetEnvironmentVariable(InlineCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletions, "1");
        }
        return Run(args, Console.Out, Console.Error);
    }

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
