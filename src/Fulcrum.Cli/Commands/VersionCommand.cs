using System.CommandLine;
using System.Reflection;

namespace Fulcrum.Cli.Commands;

internal static class VersionCommand
{
    public static string Version =>
        typeof(VersionCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public static Command Create(TextWriter output)
    {
        var command = new Command("version", "Print Fulcrum's version");
        command.SetAction(_ =>
        {
            output.WriteLine($"fulcrum {Version} (.NET {Environment.Version})");
            return 0;
        });
        return command;
    }
}
