using System.CommandLine;
using Fulcrum.Configuration;

namespace Fulcrum.Cli.Commands;

/// <summary><c>fulcrum check --config PATH</c>: validate without starting, like <c>nginx -t</c>. Exit 0 valid, 1 invalid.</summary>
internal static class CheckCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var config = ConfigOption.Create();
        var command = new Command("check", "Validate a configuration file without starting (exit 0 valid, 1 invalid)") { config };
        command.SetAction(parse =>
        {
            var file = parse.GetValue(config)!;
            var result = ConfigLoader.LoadFile(file.FullName == file.ToString() ? file.FullName : file.ToString());
            if (!result.Success)
            {
                foreach (var e in result.Errors)
                {
                    error.WriteLine(e);
                }
                error.WriteLine($"{file}: {result.Errors.Count} error(s); configuration is not valid");
                return 1;
            }
            foreach (var w in result.Warnings)
            {
                error.WriteLine($"{w.File}:{w.Line}:{w.Column}: warning: {w.Message}");
            }
            var c = result.Config!;
            var backends = c.Pools.Sum(p => p.Backends.Count);
            output.WriteLine($"{file}: configuration is valid ({c.Listeners.Count} listener(s), {c.Routes.Count} route(s), {c.Pools.Count} pool(s), {backends} backend(s))");
            return 0;
        });
        return command;
    }
}
