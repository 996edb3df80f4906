using Fulcrum.Configuration;
using Fulcrum.Forwarding;
using Fulcrum.Health;
using Fulcrum.Runtime;
using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Health;

/// <summary>A runtime on a manual clock with a fake probe: health logic without sockets or sleeps.</summary>
internal sealed class HealthHarness : IDisposable
{
    public static readonly ForwardResult Refused = new(FulcrumError.ConnectRefused, "connection refused", 0, false, false);
    public static readonly ForwardResult Ok = ForwardResult.Success(200);
    public static readonly ForwardResult Unavailable = ForwardResult.Success(503);

    private HealthHarness(FulcrumRuntime runtime, ManualTimeProvider time, FakeProbe probe)
    {
        Runtime = runtime;
        Time = time;
        Probe = probe;
    }

    public FulcrumRuntime Runtime { get; }

    public ManualTimeProvider Time { get; }

    public FakeProbe Probe { get; }

    public PoolState Pool => Runtime.Pool("p");

    public HealthAuthority Authority => Runtime.Health;

    public BackendState this[int index] => Pool.Backends[index];

    public static HealthHarness Start(string poolExtra, int backends = 3, string? stateFile = null, FakeProbe? probe = null, ManualTimeProvider? time = null)
    {
        var list = string.Join(", ", Enumerable.Range(1, backends).Select(i => $"10.0.0.{i}:80"));
        var yaml = $"""
            listeners: [{"{"} name: web, address: 127.0.0.1:0 {"}"}]
            routes: [{"{"} name: r, pool: p {"}"}]
            pools:
              - name: p
                balancing: round_robin
            {poolExtra}
                backends: [{list}]
            {(stateFile is null ? "" : $"state_file: {stateFile}")}
            """;
        var loaded = ConfigLoader.LoadText(yaml, "health.yaml");
        Assert.True(loaded.Success, string.Join("\n", loaded.Errors) + "\n" + yaml);
        time ??= new ManualTimeProvider();
        probe ??= new FakeProbe(time);
        var runtime = new FulcrumRuntime(loaded.Config!, time, probe: probe);
        _ = runtime.Start();
        return new HealthHarness(runtime, time, probe);
    }

    public HealthStatus Status(int index) => this[index].Health.Status;

    public bool Routed(int index) => Array.IndexOf(Pool.Available, this[index]) >= 0;

    public void Traffic(int index, ForwardResult result, int times = 1)
    {
        for (var i = 0; i < times; i++)
        {
            Authority.ReportTraffic(Pool, this[index], result);
        }
    }

    public void Advance(double seconds) => Time.Advance(TimeSpan.FromSeconds(seconds));

    public void Dispose() => Runtime.Dispose();
}
