using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Fulcrum.Conformance;

// Replays the labelled HTTP desync corpus against a running fulcrum process and checks two promises:
//  1. every case labelled Severe gets 400 and a closed connection, and never reaches the backend;
//  2. no case reaches the backend framed differently from how Fulcrum read it: each forwarded
//     request arrives once, with exactly the body its framing gave it, and the request pipelined
//     behind it arrives as a request of its own.
// Usage: Fulcrum.Conformance CORPUS_DIRECTORY

if (args.Length != 1 || !Directory.Exists(args[0]))
{
    Console.Error.WriteLine("usage: Fulcrum.Conformance CORPUS_DIRECTORY (../shared/corpora/http-desync-guardian)");
    return 2;
}

var cases = CorpusCase.Load(args[0]);
await using var backend = await RecordingBackend.StartAsync();
var port = FreePort();
var config = Path.Combine(Path.GetTempPath(), $"fulcrum-conformance-{Environment.ProcessId}.yaml");
await File.WriteAllTextAsync(config, $"""
    listeners: [{"{"} name: web, address: 127.0.0.1:{port} {"}"}]
    routes: [{"{"} name: all, pool: backend {"}"}]
    pools: [{"{"} name: backend, backends: [127.0.0.1:{backend.Port}] {"}"}]
    access_log: {"{"} enabled: false {"}"}
    """);

using var fulcrum = StartFulcrum(config);
var endPoint = new IPEndPoint(IPAddress.Loopback, port);
await WaitForListenerAsync(endPoint, fulcrum);

const string FollowUpPath = "/__conformance/follow-up";
// Cases where Fulcrum's answer departs from the corpus label on purpose, and why.
var deviations = new Dictionary<string, string>(StringComparer.Ordinal)
{
    ["Empty URI"] = "'GET  HTTP/1.1' has no request-target, which RFC 9112 §3.2 requires; it is refused with 400",
    ["Transfer-Encoding with a param: chunked;custom_param"] = "chunked with a parameter is no registered transfer coding, which a server behind could still take for chunked: Fulcrum refuses it with 400 (nginx answers 501); refused either way",
    ["TE with custom parameters OK"] = "chunked with a parameter is no registered transfer coding, which a server behind could still take for chunked: Fulcrum refuses it with 400 (nginx answers 501); refused either way",
};
var failures = new List<string>();
var tally = new Dictionary<string, (int Passed, int Failed)>();
var outcomes = new Dictionary<string, (int Forwarded, int Refused)>();
foreach (var c in cases)
{
    var (body, framing) = ExpectedBody(c);
    var (head, rest) = Build(c, body, FollowUpPath);
    backend.Requests.Clear();
    var (responses, closed) = await RawExchange.SendAsync(endPoint, head, rest, firstIsHead: c.Method == "HEAD", expectedResponses: 2, timeoutMs: 3000);
    await Task.Delay(20); // the backend records before it answers; this only covers a reordering on its side
    var received = backend.Requests.ToArray();
    var verdict = Judge(c, body, framing, responses, closed, received, FollowUpPath);
    var (fw, rf) = outcomes.GetValueOrDefault(c.Tier);
    outcomes[c.Tier] = received.Length > 0 ? (fw + 1, rf) : (fw, rf + 1);
    if (verdict is not null && deviations.TryGetValue(c.Name, out var why))
    {
        Console.WriteLine($"deviation [{c.Tier}] {c.File}: {c.Name}: {verdict}: {why}");
        verdict = null;
    }
    var (p, f) = tally.GetValueOrDefault(c.Tier);
    tally[c.Tier] = verdict is null ? (p + 1, f) : (p, f + 1);
    if (verdict is not null)
    {
        failures.Add($"FAIL [{c.Tier}] {c.File}: {c.Name}: {verdict}");
    }
}

try
{
    fulcrum.Kill();
    await fulcrum.WaitForExitAsync();
}
catch (InvalidOperationException)
{
}

foreach (var failure in failures)
{
    Console.WriteLine(failure);
}
foreach (var (tier, (passed, failed)) in tally.OrderBy(t => t.Key, StringComparer.Ordinal))
{
    var (forwarded, refused) = outcomes[tier];
    Console.WriteLine($"  {tier,-11} {passed,3} passed, {failed} failed   ({forwarded} forwarded, {refused} refused)");
}
var total = tally.Values.Sum(t => t.Passed);
Console.WriteLine($"conformance: {total} passed, {failures.Count} failed");
return failures.Count == 0 ? 0 : 1;

// How RFC 9112 §6.3 frames the case: exactly one "Transfer-Encoding: chunked", else one plain
// Content-Length (repeated identically or not), else no body. Cases outside those shapes get no body and are expected to
// be refused; if Fulcrum forwards one anyway, the follow-up request shows whether it agreed.
static (byte[] Body, string Framing) ExpectedBody(CorpusCase c)
{
    var te = c.Headers.Where(h => h.Name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase)).ToList();
    var cl = c.Headers.Where(h => h.Name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)).ToList();
    if (te.Count == 1 && te[0].Value.Trim(' ', '\t').Equals("chunked", StringComparison.OrdinalIgnoreCase))
    {
        return ("hello"u8.ToArray(), "chunked");
    }
    // The same length on several lines is that one length (RFC 9110 §8.6, issue 21).
    if (te.Count == 0 && cl.Count >= 1 && cl.All(h => h.Value.Trim(' ', '\t') == cl[0].Value.Trim(' ', '\t'))
        && int.TryParse(cl[0].Value.Trim(' ', '\t'), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= 16_000_000)
    {
        return (Enumerable.Repeat((byte)'a', n).ToArray(), "content-length");
    }
    return ([], "none");
}

// The request head, then (sent a moment later) its body and a pipelined follow-up request: a
// proxy that refuses the head can answer before the body arrives, so its 400 is not lost to the
// reset a close with unread data causes.
static (byte[] Head, byte[] Tail) Build(CorpusCase c, byte[] body, string followUp)
{
    var head = new StringBuilder();
    head.Append(c.Method).Append(' ').Append(c.Uri).Append(' ').Append(c.Version).Append("\r\n");
    if (!c.Headers.Any(h => h.Name.Equals("Host", StringComparison.OrdinalIgnoreCase)))
    {
        head.Append("Host: localhost\r\n");
    }
    foreach (var (name, value) in c.Headers)
    {
        head.Append(name).Append(':').Append(value).Append("\r\n");
    }
    head.Append("\r\n");
    var bytes = new List<byte>();
    var (_, framing) = ExpectedBody(c);
    if (framing == "chunked")
    {
        bytes.AddRange(Encoding.ASCII.GetBytes($"{body.Length:x}\r\n"));
        bytes.AddRange(body);
        bytes.AddRange("\r\n0\r\n\r\n"u8.ToArray());
    }
    else
    {
        bytes.AddRange(body);
    }
    bytes.AddRange(Encoding.ASCII.GetBytes($"GET {followUp} HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    return (Encoding.Latin1.GetBytes(head.ToString()), [.. bytes]);
}

static string? Judge(CorpusCase c, byte[] body, string framing, List<WireResponse> responses, bool closed, Received[] received, string followUp)
{
    var first = responses.Count > 0 ? responses[0].Status : 0;
    // A refusal: 4xx, 501 for a transfer coding or 505 for a version Fulcrum does not implement,
    // then the connection closed.
    var refusal = first is (>= 400 and < 500) or 501 or 505;
    var rejected = refusal && closed && responses.Count == 1 && received.Length == 0;
    if (c.Tier == "Severe")
    {
        if (first != 400)
        {
            return $"expected 400, got {(first == 0 ? "no response" : first.ToString(CultureInfo.InvariantCulture))}";
        }
        if (!closed)
        {
            return "answered 400 but left the connection open";
        }
        if (received.Length > 0)
        {
            return $"the backend received {received.Length} request(s)";
        }
        return responses.Count == 1 ? null : "a request after the refused one was answered";
    }
    if (rejected)
    {
        // Refusing an ambiguous request is always safe; refusing a compliant one is a bug, except
        // 501 for a transfer coding Fulcrum does not implement (RFC 9112 §6.1, as nginx does).
        return c.Tier == "Compliant" && first != 501 ? $"a compliant request was refused with {first}" : null;
    }
    if (refusal && received.Length == 0)
    {
        return closed ? "refused, yet answered a pipelined request after it" : $"refused with {first} but left the connection open";
    }
    // Forwarded: the backend must have seen this request once, with the body its framing gave it,
    // and the follow-up as a request of its own (unless HTTP/1.0 closed the connection first).
    var main = received.Where(r => r.Target != followUp).ToArray();
    if (main.Length != 1)
    {
        return $"the backend received {main.Length} requests for one ({string.Join(", ", received.Select(r => r.Method + " " + r.Target))}); Fulcrum answered [{string.Join(", ", responses.Select(r => r.Status))}], closed: {closed}";
    }
    if (!main[0].Body.AsSpan().SequenceEqual(body))
    {
        return $"framed differently: sent a {framing} body of {body.Length} bytes, the backend received {main[0].Body.Length}";
    }
    if (main[0].ContentLength is not null && main[0].TransferEncoding is not null)
    {
        return "forwarded with both Content-Length and Transfer-Encoding";
    }
    var followUps = received.Count(r => r.Target == followUp);
    var keepAlive = c.Version == "HTTP/1.1";
    if (keepAlive && !closed && followUps != 1)
    {
        return $"the pipelined follow-up request reached the backend {followUps} times";
    }
    return null;
}

static int FreePort()
{
    using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
    return ((IPEndPoint)socket.LocalEndPoint!).Port;
}

static Process StartFulcrum(string config)
{
    var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
    info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "fulcrum.dll"));
    info.ArgumentList.Add("run");
    info.ArgumentList.Add("--config");
    info.ArgumentList.Add(config);
    var process = Process.Start(info)!;
    process.ErrorDataReceived += (_, e) => { if (e.Data is { } line && line.Contains("fail", StringComparison.Ordinal)) { Console.Error.WriteLine("fulcrum: " + line); } };
    process.OutputDataReceived += (_, _) => { };
    process.BeginErrorReadLine();
    process.BeginOutputReadLine();
    return process;
}

static async Task WaitForListenerAsync(IPEndPoint endPoint, Process fulcrum)
{
    for (var i = 0; i < 300; i++)
    {
        if (fulcrum.HasExited)
        {
            throw new InvalidOperationException($"fulcrum exited with {fulcrum.ExitCode} before listening");
        }
        try
        {
            using var probe = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await probe.ConnectAsync(endPoint);
            return;
        }
        catch (SocketException)
        {
            await Task.Delay(100);
        }
    }
    throw new TimeoutException("fulcrum did not start listening within 30 s");
}
