using YamlDotNet.RepresentationModel;

namespace Fulcrum.Conformance;

/// <summary>One labelled case of the corpus: a request head and the tier a careful proxy should give it.</summary>
internal sealed record CorpusCase(string File, string Name, string Method, string Uri, string Version, IReadOnlyList<(string Name, string Value)> Headers, string Tier, string Reason)
{
    public static IReadOnlyList<CorpusCase> Load(string directory)
    {
        var cases = new List<CorpusCase>();
        foreach (var path in System.IO.Directory.GetFiles(directory, "*.yaml").Order(StringComparer.Ordinal))
        {
            var stream = new YamlStream();
            using (var reader = System.IO.File.OpenText(path))
            {
                stream.Load(reader);
            }
            if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlSequenceNode items)
            {
                continue;
            }
            foreach (var item in items.Children.OfType<YamlMappingNode>())
            {
                var headers = new List<(string, string)>();
                if (Get(item, "headers") is YamlSequenceNode headerNodes)
                {
                    foreach (var h in headerNodes.Children.OfType<YamlMappingNode>())
                    {
                        headers.Add((Scalar(h, "name"), Scalar(h, "value")));
                    }
                }
                var expected = (YamlMappingNode)Get(item, "expected")!;
                cases.Add(new CorpusCase(
                    System.IO.Path.GetFileName(path),
                    Scalar(item, "name"),
                    Scalar(item, "method"),
                    Scalar(item, "uri"),
                    Scalar(item, "version"),
                    headers,
                    Scalar(expected, "tier"),
                    Scalar(expected, "reason")));
            }
        }
        return cases;
    }

    private static YamlNode? Get(YamlMappingNode map, string key) =>
        map.Children.TryGetValue(new YamlScalarNode(key), out var node) ? node : null;

    private static string Scalar(YamlMappingNode map, string key) => (Get(map, key) as YamlScalarNode)?.Value ?? "";
}
