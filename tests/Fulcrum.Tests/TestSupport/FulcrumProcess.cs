using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Fulcrum.Tests.TestSupport;

/// <summary>The built <c>fulcrum</c> command run as a real process, as an operator runs it.</summary>
public sealed partial class FulcrumProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private FulcrumProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => { lock (_stdout) { _stdout.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (_stderr) { _stderr.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Stdout { get { lock (_stdout) { return _stdout.ToString(); } } }

    public string Stderr { get { lock (_stderr) { return _stderr.ToString(); } } }

    public int Id => _process.Id;

    /// <summary>The process's resident memory now, in KiB (VmRSS).</summary>
    public long ResidentKiB
    {
        get
        {
            foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture);
                }
            }
            throw new InvalidOperationException("no VmRSS");
        }
    }

    public bool HasExited => _process.HasExited;

    /// <summary>Writes <paramref name="yaml"/> to a new file in the temporary folder and returns its path (the test deletes it).</summary>
    public static string WriteConfig(string yaml)
    {
        var path = Path.Combine(Path.GetTempPath(), $"fulcrum-test-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    public static FulcrumProcess Start(params string[] args) => Start(new Dictionary<string, string>(), args);

    public static FulcrumProcess Start(IDictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "fulcrum.dll"));
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }
        return new FulcrumProcess(Process.Start(info)!);
    }

    /// <summary>
    /// Starts fulcrum with its open-file limit (soft and hard) lowered to <paramref name="limit"/>,
    /// through the shell's <c>ulimit</c>; <c>exec</c> keeps the process id fulcrum's.
    /// </summary>
    public static FulcrumProcess StartWithOpenFileLimit(int limit, params string[] args)
    {
        var info = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"ulimit -n {limit} && exec dotnet \"$0\" \"$@\"");
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "fulcrum.dll"));
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }
        return new FulcrumProcess(Process.Start(info)!);
    }

    /// <summary>Runs to the end and returns the exit code (bounded: a hung process fails the test).</summary>
    public static Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(params string[] args) =>
        RunAsync(new Dictionary<string, string>(), args);

    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(IDictionary<string, string> environment, params string[] args)
    {
        using var process = Start(environment, args);
        var code = await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        return (code, process.Stdout, process.Stderr);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"fulcrum did not exit within {timeout}; stderr:\n{Stderr}");
        }
        _process.WaitForExit(); // drains the output readers
        return _process.ExitCode;
    }

    /// <summary>Waits until stderr holds <paramref name="text"/>.</summary>
    public async Task WaitForStderrAsync(string text, int timeoutMs = 30_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!Stderr.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited || Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"'{text}' never appeared; exited={_process.HasExited}; stderr:\n{Stderr}");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>Sends a POSIX signal to this process only (SIGTERM 15, SIGINT 2).</summary>
    public void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        _process.Dispose();
    }
}
