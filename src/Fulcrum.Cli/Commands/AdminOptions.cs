using System.CommandLine;

namespace Fulcrum.Cli.Commands;

/// <summary>The options every admin command shares.</summary>
internal sealed class AdminOptions
{
    public Option<string?> Admin { get; } = new("--admin") { Description = "Admin API URL (default $FULCRUM_ADMIN, else http://127.0.0.1:9901)" };

    public Option<string?> TokenFile { get; } = new("--token-file") { Description = "File holding the admin token (default: the token in $FULCRUM_TOKEN)" };

    public Option<bool> Json { get; } = new("--json") { Description = "Print the API's JSON instead of a table" };

    public Command Add(Command command, bool json = true)
    {
        command.Options.Add(Admin);
        command.Options.Add(TokenFile);
        if (json)
        {
            command.Options.Add(Json);
        }
        return command;
    }

    public AdminClient Client(ParseResult parse) => new(parse.GetValue(Admin), parse.GetValue(TokenFile));
}
