using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Fulcrum.Configuration;

/// <summary>
/// Reads one YAML mapping against the keys it may hold. Every problem is recorded in the shared
/// error list with the line and column of the offending node, and reading carries on, so that one
/// pass reports every error in the file.
/// </summary>
internal sealed class YamlMap
{
    private readonly ConfigReadContext _context;
    private readonly Dictionary<string, YamlNode> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, YamlNode> _keys = new(StringComparer.Ordinal);

    public YamlMap(ConfigReadContext context, YamlMappingNode node, string path, params string[] known)
    {
        _context = context;
        Node = node;
        Path = path;
        foreach (var (keyNode, valueNode) in node.Children)
        {
            var key = keyNode is YamlScalarNode s ? s.Value ?? "" : "";
            if (Array.IndexOf(known, key) < 0)
            {
                var where = path.Length == 0 ? "at the top level" : $"in {path}";
                context.Error(keyNode, $"unknown key '{key}' {where}{Suggest.DidYouMean(key, known)} (expected one of: {string.Join(", ", known)})");
                continue;
            }
            _values[key] = valueNode;
            _keys[key] = keyNode;
        }
    }

    public YamlMappingNode Node { get; }

    public string Path { get; }

    public bool Has(string key) => _values.ContainsKey(key);

    public YamlNode? Value(string key) => _values.GetValueOrDefault(key);

    public string Describe(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

    public void Locate(object owner, string field, string key)
    {
        if (_values.TryGetValue(key, out var node))
        {
            _context.Map.Set(owner, field, (int)node.Start.Line, (int)node.Start.Column);
        }
    }

    public void DeclareItems(object owner, string field) => _context.Map.DeclareItems(owner, field);

    public void Error(YamlNode node, string message) => _context.Error(node, message);

    /// <summary>Something that does not refuse the file but should be fixed (an expired certificate).</summary>
    public void Warn(YamlNode node, string message) =>
        _context.Warnings.Add(new ConfigError(_context.File, (int)node.Start.Line, (int)node.Start.Column, message));

    /// <summary>A path as written, made absolute against the configuration file's folder.</summary>
    public string ResolvePath(string path) =>
        System.IO.Path.IsPathRooted(path) ? path : System.IO.Path.GetFullPath(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(_context.File)) ?? ".", path));

    public void Locate(object owner, YamlNode node) => _context.Map.Set(owner, "", (int)node.Start.Line, (int)node.Start.Column);

    public void LocateSelf(object owner) => _context.Map.Set(owner, "", (int)Node.Start.Line, (int)Node.Start.Column);

    public string? String(string key, bool required = false)
    {
        if (!_values.TryGetValue(key, out var node))
        {
            if (required)
            {
                _context.Error(Node, $"{Describe(key)} is required");
            }
            return null;
        }
        if (node is not YamlScalarNode scalar)
        {
            _context.Error(node, $"{Describe(key)} must be a single value, not a {Kind(node)}");
            return null;
        }
        var value = scalar.Value ?? "";
        if (value.Length == 0 && required)
        {
            _context.Error(node, $"{Describe(key)} is empty");
            return null;
        }
        return value;
    }

    public int? Int(string key, int min, int max)
    {
        var text = String(key);
        if (text is null)
        {
            return null;
        }
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            _context.Error(_values[key], $"{Describe(key)}: '{text}' is not a whole number");
            return null;
        }
        if (value < min || value > max)
        {
            _context.Error(_values[key], $"{Describe(key)}: {value} is out of range ({min} to {max})");
            return null;
        }
        return value;
    }

    public bool? Bool(string key)
    {
        var text = String(key);
        if (text is null)
        {
            return null;
        }
        switch (text.ToLowerInvariant())
        {
            case "true": case "yes": case "on": return true;
            case "false": case "no": case "off": return false;
            default:
                _context.Error(_values[key], $"{Describe(key)}: '{text}' is not true or false");
                return null;
        }
    }

    public TimeSpan? Duration(string key, bool allowZero = false, TimeSpan? max = null)
    {
        var text = String(key);
        if (text is null)
        {
            return null;
        }
        if (!Configuration.Duration.TryParse(text, max ?? Configuration.Duration.Max, out var value, out var error))
        {
            _context.Error(_values[key], $"{Describe(key)}: {error}");
            return null;
        }
        if (value <= TimeSpan.Zero && !(allowZero && value == TimeSpan.Zero))
        {
            _context.Error(_values[key], $"{Describe(key)}: must be longer than 0s");
            return null;
        }
        return value;
    }

    public long? Size(string key, long min, long max)
    {
        var text = String(key);
        if (text is null)
        {
            return null;
        }
        if (!Configuration.Size.TryParse(text, out var value, out var error))
        {
            _context.Error(_values[key], $"{Describe(key)}: {error}");
            return null;
        }
        if (value < min || value > max)
        {
            _context.Error(_values[key], $"{Describe(key)}: {Configuration.Size.Format(value)} is out of range ({Configuration.Size.Format(min)} to {Configuration.Size.Format(max)})");
            return null;
        }
        return value;
    }

    public HostPort? Address(string key, bool required, bool allowPortZero)
    {
        var text = String(key, required);
        if (text is null)
        {
            return null;
        }
        if (!HostPort.TryParse(text, allowPortZero, out var value, out var error))
        {
            _context.Error(_values[key], $"{Describe(key)}: {error}");
            return null;
        }
        return value;
    }

    /// <summary>One of a fixed set of words, with a did-you-mean when it is not.</summary>
    public string? OneOf(string key, IReadOnlyCollection<string> allowed)
    {
        var text = String(key);
        if (text is null)
        {
            return null;
        }
        if (!allowed.Contains(text))
        {
            _context.Error(_values[key], $"{Describe(key)}: unknown value '{text}'{Suggest.DidYouMean(text, allowed)} (expected one of: {string.Join(", ", allowed)})");
            return null;
        }
        return text;
    }

    public YamlMap? Map(string key, params string[] known)
    {
        if (!_values.TryGetValue(key, out var node))
        {
            return null;
        }
        if (node is YamlScalarNode { Value: null or "" })
        {
            return null; // "key:" with nothing after it reads as empty.
        }
        if (node is not YamlMappingNode mapping)
        {
            _context.Error(node, $"{Describe(key)} must be a mapping of keys to values, not a {Kind(node)}");
            return null;
        }
        return new YamlMap(_context, mapping, Describe(key), known);
    }

    /// <summary>The items of a sequence; a scalar where a list is expected is an error.</summary>
    public IReadOnlyList<YamlNode> Sequence(string key)
    {
        if (!_values.TryGetValue(key, out var node))
        {
            return [];
        }
        if (node is YamlScalarNode { Value: null or "" })
        {
            return [];
        }
        if (node is not YamlSequenceNode sequence)
        {
            _context.Error(node, $"{Describe(key)} must be a list (items starting with '- '), not a {Kind(node)}");
            return [];
        }
        return sequence.Children.ToList();
    }

    /// <summary>A list of words, accepting both <c>[GET, POST]</c> and a single word.</summary>
    public IReadOnlyList<string> Strings(string key)
    {
        if (!_values.TryGetValue(key, out var node))
        {
            return [];
        }
        if (node is YamlScalarNode scalar)
        {
            return string.IsNullOrEmpty(scalar.Value) ? [] : [scalar.Value];
        }
        var result = new List<string>();
        foreach (var item in Sequence(key))
        {
            if (item is YamlScalarNode { Value: { Length: > 0 } v })
            {
                result.Add(v);
            }
            else
            {
                _context.Error(item, $"{Describe(key)}: each item must be a single value");
            }
        }
        return result;
    }

    public YamlMap? Item(YamlNode node, string path, params string[] known)
    {
        if (node is not YamlMappingNode mapping)
        {
            _context.Error(node, $"{path} must be a mapping of keys to values, not a {Kind(node)}");
            return null;
        }
        return new YamlMap(_context, mapping, path, known);
    }

    internal static string Kind(YamlNode node) => node switch
    {
        YamlScalarNode => "single value",
        YamlSequenceNode => "list",
        YamlMappingNode => "mapping",
        _ => "node",
    };
}
