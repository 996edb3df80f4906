using System.CommandLine;
using Fulcrum.Configuration;
using Fulcrum.Hosting;

namespace Fulcrum.Cli.Commands;

/// <summary><c>fulcrum run --config PATH</c>: start the load balancer and run until SIGINT or SIGTERM.</summary>
internal static class RunCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var config = ConfigOption.Create();
        var command = new Command("run", "Run the load balancer with a configuration file") { config };
        command.SetAction(async (parse, _) =>
        {
            var file = parse.GetValue(config)!;
            var result = ConfigLoader.LoadFile(file.ToString());
            if (!result.Success)
            {
                foreach (var e in result.Errors)
                {
                    error.WriteLine(e);
                }
                error.WriteLine($"{file}: {result.Errors.Count} error(s); not starting");
                return 1;
            }
            foreach (var w in result.Warnings)
            {
                error.WriteLine($"{w.File}:{w.Line}:{w.Column}: warning: {w.Message}");
            }
            return await RunAsync(result.Config!, output, error).ConfigureAwait(false);
        });
        return command;
    }

    public static async Task<int> RunAsync(FulcrumConfig config, TextWriter output, TextWriter error, Action<FulcrumServer>? started = null)
    {
        using var signal = new ShutdownSignal();
        // SIGHUP: reload the configuration file, as nginx does (the outcome is logged). Taken
        // before starting, so one that arrives during start-up is not the default "terminate":
        // it is remembered and run once the server is up.
        FulcrumServer? running = null;
        var hangupWhileStarting = 0;
        using var hangup = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            if (Volatile.Read(ref running) is { } up)
            {
                _ = up.ReloadAsync("SIGHUP");
            }
            else
            {
                Volatile.Write(ref hangupWhileStarting, 1);
            }
        });
        FulcrumServer server;
        try
        {
            server = await FulcrumServer.StartAsync(config, cancellationToken: signal.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            // Kestrel reports an address in use or not available as an IOException; a damaged
            // state file is an InvalidDataException that names the file.
            error.WriteLine($"fulcrum: cannot start: {e.Message}");
            return 1;
        }
        await using (server.ConfigureAwait(false))
        {
            foreach (var listener in config.Listeners)
            {
                error.WriteLine($"fulcrum: listener '{listener.Name}' on http://{server.ListenerEndPoint(listener.Name)}");
            }
            if (server.AdminEndPoint is { } admin)
            {
                error.WriteLine($"fulcrum: admin on http://{admin}");
            }
            started?.Invoke(server);
            // SIGUSR1 (10 on Linux; .NET takes raw signal numbers cast to PosixSignal): reopen the
            // access log file, as nginx does, for logrotate.
            using var reopen = System.Runtime.InteropServices.PosixSignalRegistration.Create((System.Runtime.InteropServices.PosixSignal)10, context =>
            {
                context.Cancel = true;
                server.ReopenAccessLog();
            });
            Volatile.Write(ref running, server);
            if (Volatile.Read(ref hangupWhileStarting) != 0)
            {
                _ = server.ReloadAsync("SIGHUP");
            }
            var signalled = Task.Delay(Timeout.Infinite, signal.Token);
            var first = await Task.WhenAny(signalled, server.ShutdownRequested).ConfigureAwait(false);
            var why = first == server.ShutdownRequested ? $"shutdown requested through the admin API by {server.ShutdownRequested.Result}" : $"{signal.Received ?? "stop"} received";
            var shutdown = server.Runtime.Current.Config.Shutdown; // as reloaded
            error.WriteLine($"fulcrum: {why}: /readyz now answers 503; accepting for {Configuration.Duration.Format(shutdown.Delay)} more, then requests in flight get up to {Configuration.Duration.Format(shutdown.DrainTimeout)}");
            await server.ShutdownAsync(shutdown.Delay, shutdown.DrainTimeout).ConfigureAwait(false);
        }
        _ = output;
        error.WriteLine("fulcrum: stopped");
        return 0;
    }
}
