using Fulcrum.Configuration;

namespace Fulcrum.Tests.Configuration;

/// <summary>Every configuration shipped in examples/ stays valid as the schema changes.</summary>
public class ExamplesTests
{
    public static TheoryData<string> Examples()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(Path.Combine(RepositoryRoot(), "examples"), "*.yaml").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(file));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public void Example_IsValid(string name)
    {
        var result = ConfigLoader.LoadFile(Path.Combine(RepositoryRoot(), "examples", name));
        Assert.True(result.Success, string.Join("\n", result.Errors));
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Fulcrum.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("cannot find the repository root (Fulcrum.slnx) above " + AppContext.BaseDirectory);
    }
}
