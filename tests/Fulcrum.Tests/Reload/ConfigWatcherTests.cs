using Fulcrum.Tests.Integration;
using Fulcrum.Tests.TestSupport;
using Fulcrum.Tests.Tunnels;

namespace Fulcrum.Tests.Reload;

/// <summary>
/// The configuration file watched: every way of saving it is seen, and other files in its folder
/// (an access log, a state file) neither trigger a look nor put one off.
/// </summary>
[Collection(nameof(SerialTests))]
public sealed class ConfigWatcherTests : ConfigFolder
{
    /// <summary>Everything routed to <paramref name="backend"/>.</summary>
    private static string Yaml(TestBackend backend) => ReloadTests.Config(ReloadTests.MainRoute("round_robin", [backend.Address]));

    /// <summary>Waits for a reload the file watcher started, then checks that traffic reaches <paramref name="backend"/>.</summary>
    private static async Task AppliedFromFileAsync(TestProxy proxy, string backend)
    {
        await WebSocketTests.Eventually(() => proxy.Server.Status.LastReload is { Success: true, Trigger: "file" }, 5000);
        Assert.Equal(backend, await proxy.Client.GetStringAsync("/"));
    }

    [Fact]
    public async Task The_file_is_watched_and_an_edit_is_applied()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        await using var proxy = await StartAsync(Yaml(a));
        Assert.Equal("a", await proxy.Client.GetStringAsync("/"));
        // Written as editors do: a new file renamed over the old one.
        var temp = File + ".tmp";
        await System.IO.File.WriteAllTextAsync(temp, Yaml(b));
        System.IO.File.Move(temp, File, overwrite: true);
        await AppliedFromFileAsync(proxy, "b");
    }

    [Fact]
    public async Task Writes_to_other_files_in_the_folder_are_not_looked_at()
    {
        await System.IO.File.WriteAllTextAsync(File, "routes: []\n");
        var log = Path.Combine(Dir, "access.log");
        await System.IO.File.WriteAllTextAsync(log, ""); // created before the watch: a creation is looked at
        var reloads = 0;
        using var watcher = new Fulcrum.Hosting.ConfigWatcher(File, null, () =>
        {
            Interlocked.Increment(ref reloads);
            return Task.FromResult<Fulcrum.Hosting.ReloadResult>(null!);
        }, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        // An access log next to the configuration, written for longer than the longest wait.
        using (var output = new FileStream(log, FileMode.Append, FileAccess.Write, FileShare.ReadWrite, 1))
        {
            for (var i = 0; i < 75; i++)
            {
                output.Write("{\"status\":200}\n"u8);
                Thread.Sleep(20);
            }
        }
        await Task.Delay(Fulcrum.Hosting.ConfigWatcher.Debounce * 2);
        Assert.Equal(0, Volatile.Read(ref watcher.Looks));
        // The configuration's own write is still seen.
        await System.IO.File.WriteAllTextAsync(File, "routes: [] # edited\n");
        await WebSocketTests.Eventually(() => Volatile.Read(ref reloads) == 1, 5000);
    }

    [Fact]
    public async Task An_edit_in_place_of_the_file_a_symbolic_link_points_to_is_applied()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        var target = Path.Combine(Dir, "fulcrum-v2.yaml");
        await System.IO.File.WriteAllTextAsync(target, Yaml(a));
        System.IO.File.CreateSymbolicLink(File, target);
        await using var proxy = await TestProxy.StartFileAsync(File);
        Assert.Equal("a", await proxy.Client.GetStringAsync("/"));
        await System.IO.File.WriteAllTextAsync(target, Yaml(b));
        await AppliedFromFileAsync(proxy, "b");
    }

    [Fact]
    public async Task An_edit_is_applied_while_other_files_in_its_folder_are_written_all_the_time()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var b = await TestBackend.StartAsync("b");
        await using var proxy = await StartAsync(Yaml(a));
        // Next to the configuration, far more often than the debounce's quiet time, from a thread
        // of its own so no timer delay pauses it: an access log written, and a state file
        // replaced (written under a temporary name, renamed over).
        var writing = true;
        var others = new Thread(() =>
        {
            var state = Path.Combine(Dir, "other.state.json");
            using var output = new FileStream(Path.Combine(Dir, "access.log"), FileMode.Append, FileAccess.Write, FileShare.ReadWrite, 1);
            while (Volatile.Read(ref writing))
            {
                output.Write("{\"status\":200}\n"u8);
                System.IO.File.WriteAllText(state + ".tmp", "{}");
                System.IO.File.Move(state + ".tmp", state, overwrite: true);
                Thread.Sleep(20);
            }
        });
        others.Start();
        try
        {
            await Task.Delay(500);
            Assert.Null(proxy.Server.Status.LastReload);
            // Written in place, as `cat >` or an editor that saves in place does.
            await System.IO.File.WriteAllTextAsync(File, Yaml(b));
            await AppliedFromFileAsync(proxy, "b");
        }
        finally
        {
            Volatile.Write(ref writing, false);
            others.Join();
        }
    }

    [Fact]
    public async Task After_every_storm_of_writes_the_last_version_is_in_force_within_a_second()
    {
        await using var a = await TestBackend.StartAsync("a");
        await using var proxy = await StartAsync(Yaml(a));
        var random = new Random(20);
        var version = 0;
        string Version() => Yaml(a) + $"# version {++version}\n";
        using var load = new CancellationTokenSource();
        var traffic = Task.Run(async () =>
        {
            while (!load.IsCancellationRequested)
            {
                using var response = await proxy.Client.GetAsync("/");
            }
        });
        var late = new List<string>();
        for (var storm = 0; storm < 6; storm++)
        {
            string last = "";
            for (var write = 0; write < 16; write++)
            {
                last = Version();
                if (write % 2 == 0)
                {
                    await System.IO.File.WriteAllTextAsync(File, last); // in place
                }
                else
                {
                    await System.IO.File.WriteAllTextAsync(File + ".tmp", last); // renamed over
                    System.IO.File.Move(File + ".tmp", File, overwrite: true);
                }
                await Task.Delay(random.Next(0, 200));
            }
            var expected = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(last)));
            var deadline = Environment.TickCount64 + 1000;
            while (proxy.Server.Runtime.Current.Config.SourceHash != expected && Environment.TickCount64 < deadline)
            {
                await Task.Delay(10);
            }
            if (proxy.Server.Runtime.Current.Config.SourceHash != expected)
            {
                late.Add($"storm {storm}: version {version} was not in force 1 s after it was written");
                // Let it settle before the next storm, so one miss does not spill into the next.
                await Task.Delay(2000);
            }
        }
        await load.CancelAsync();
        await traffic;
        Assert.Empty(late);
    }

    [Fact]
    public async Task An_edit_whose_events_were_all_lost_is_still_applied_within_a_second()
    {
        await System.IO.File.WriteAllTextAsync(File, "routes: []\n");
        var reloads = 0;
        // No file events at all: what an overflowed or merged inotify queue comes down to.
        using var watcher = new Fulcrum.Hosting.ConfigWatcher(File, null, () =>
        {
            Interlocked.Increment(ref reloads);
            return Task.FromResult<Fulcrum.Hosting.ReloadResult>(null!);
        }, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, watchEvents: false);
        await Task.Delay(Fulcrum.Hosting.ConfigWatcher.PollEvery * 2);
        Assert.Equal(0, Volatile.Read(ref reloads)); // the same content is not reloaded

        await System.IO.File.WriteAllTextAsync(File, "routes: [] # edited\n");
        var written = Environment.TickCount64;
        await WebSocketTests.Eventually(() => Volatile.Read(ref reloads) == 1, 5000);
        Assert.True(Environment.TickCount64 - written < 1000, $"applied {Environment.TickCount64 - written} ms after the write");
        await Task.Delay(Fulcrum.Hosting.ConfigWatcher.PollEvery * 3);
        Assert.Equal(1, Volatile.Read(ref reloads)); // and once is enough
    }
}
