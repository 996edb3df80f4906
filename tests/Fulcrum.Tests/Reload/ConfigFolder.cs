using Fulcrum.Tests.TestSupport;

namespace Fulcrum.Tests.Reload;

/// <summary>A temporary folder holding the configuration file a test starts Fulcrum from, removed after the test.</summary>
public abstract class ConfigFolder : IDisposable
{
    protected string Dir { get; } = Directory.CreateTempSubdirectory("fulcrum-config-").FullName;

    protected string File => Path.Combine(Dir, "fulcrum.yaml");

    public void Dispose()
    {
        Directory.Delete(Dir, recursive: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Writes <paramref name="yaml"/> to <see cref="File"/> and starts Fulcrum from it, so it watches the file.</summary>
    protected async Task<TestProxy> StartAsync(string yaml)
    {
        await System.IO.File.WriteAllTextAsync(File, yaml);
        return await TestProxy.StartFileAsync(File);
    }
}
