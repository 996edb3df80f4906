using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Playwright;

// Runs `fulcrum demo` (the built binary, as an operator would), opens its WebSocket page in
// headless Chromium, and checks that the page came through Fulcrum, that its WebSocket opened
// through Fulcrum and echoed the page's message, and that Fulcrum logged the tunnel.
var chromium = args.Length > 0 ? args[0] : "/usr/bin/chromium";
if (!File.Exists(chromium))
{
    Console.Error.WriteLine($"browser: {chromium} not found (tests/browser-check.sh installs Debian's chromium)");
    return 2;
}

var port = FreePort();
var fulcrum = Path.Combine(AppContext.BaseDirectory, "fulcrum.dll");
var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
info.ArgumentList.Add(fulcrum);
info.ArgumentList.Add("demo");
info.ArgumentList.Add("--port");
info.ArgumentList.Add(port.ToString(System.Globalization.CultureInfo.InvariantCulture));
using var demo = Process.Start(info)!;
var stdout = new System.Text.StringBuilder();
var stderr = new System.Text.StringBuilder();
demo.OutputDataReceived += (_, e) => { lock (stdout) { stdout.AppendLine(e.Data); } };
demo.ErrorDataReceived += (_, e) => { lock (stderr) { stderr.AppendLine(e.Data); } };
demo.BeginOutputReadLine();
demo.BeginErrorReadLine();
var failures = 0;
var passed = 0;
try
{
    await WaitForAsync(() => { lock (stderr) { return stderr.ToString().Contains("Ctrl-C stops", StringComparison.Ordinal); } }, 30_000, "fulcrum demo did not start");

    using var playwright = await Playwright.CreateAsync();
    await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
    {
        ExecutablePath = chromium,
        Headless = true,
        Args = ["--no-sandbox"],
        Timeout = 30_000,
    });
    var page = await browser.NewPageAsync();
    var response = await page.GotoAsync($"http://127.0.0.1:{port}/websocket", new PageGotoOptions { Timeout = 15_000 });
    Check(response is { Status: 200 }, $"the page loaded through Fulcrum (status {response?.Status})");
    Check(response is not null && (await response.HeaderValueAsync("x-request-id")) is { Length: > 0 }, "the page carries Fulcrum's X-Request-Id");
    await page.WaitForFunctionAsync("() => document.getElementById('echo').textContent.length > 0", null, new PageWaitForFunctionOptions { Timeout = 15_000 });
    var echo = await page.TextContentAsync("#echo");
    var state = await page.TextContentAsync("#state");
    Check(echo == "hello from the browser", $"the WebSocket echoed the page's message (got '{echo}')");
    Check(state == "open", $"the WebSocket is open (state '{state}')");

    // Closing the page ends the tunnel; its access log line says so.
    await page.CloseAsync();
    var logged = await WaitForAsync(() => { lock (stdout) { return stdout.ToString().Split('\n').Any(l => l.Contains("\"path\":\"/ws\"", StringComparison.Ordinal) && l.Contains("\"status\":101", StringComparison.Ordinal) && l.Contains("\"tunnel\":true", StringComparison.Ordinal)); } }, 10_000, null);
    Check(logged, "Fulcrum's access log has the tunnel: /ws, 101, tunnel true");

    bool Check(bool ok, string what)
    {
        Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}");
        failures += ok ? 0 : 1;
        passed += ok ? 1 : 0;
        return ok;
    }
}
catch (Exception e)
{
    Console.Error.WriteLine($"browser: {e.GetType().Name}: {e.Message}");
    lock (stderr)
    {
        Console.Error.WriteLine(stderr.ToString());
    }
    failures++;
}
finally
{
    if (!demo.HasExited)
    {
        demo.Kill();
        await demo.WaitForExitAsync();
    }
}
Console.WriteLine($"browser: {passed} passed, {failures} failed");
return failures == 0 ? 0 : 1;

static int FreePort()
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}

static async Task<bool> WaitForAsync(Func<bool> condition, int timeoutMs, string? failure)
{
    var deadline = Environment.TickCount64 + timeoutMs;
    while (!condition())
    {
        if (Environment.TickCount64 > deadline)
        {
            return failure is null ? false : throw new TimeoutException(failure);
        }
        await Task.Delay(100);
    }
    return true;
}
