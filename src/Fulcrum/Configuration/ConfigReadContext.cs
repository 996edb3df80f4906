using YamlDotNet.RepresentationModel;

namespace Fulcrum.Configuration;

/// <summary>What one load collects: its file name, the errors so far and the source map.</summary>
internal sealed class ConfigReadContext(string file)
{
    public string File { get; } = file;

    public List<ConfigError> Errors { get; } = [];

    /// <summary>What is wrong but does not refuse the file (<c>fulcrum check</c> and a reload print them).</summary>
    public List<ConfigError> Warnings { get; } = [];

    public ConfigSourceMap Map { get; } = new(file);

    public void Error(YamlNode node, string message) =>
        Errors.Add(new ConfigError(File, (int)node.Start.Line, (int)node.Start.Column, message));
}
