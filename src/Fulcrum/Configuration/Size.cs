using System.Globalization;

namespace Fulcrum.Configuration;

/// <summary>Sizes as operators write them: <c>65536</c>, <c>64KiB</c>, <c>1MiB</c>, <c>2GiB</c>.</summary>
public static class Size
{
    public static bool TryParse(string text, out long value, out string error)
    {
        value = 0;
        error = "";
        var s = text.Trim();
        var i = 0;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            i++;
        }
        if (i == 0 || !long.TryParse(s.AsSpan(0, i), NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            error = $"'{text}' is not a size; write it like 65536, 64KiB or 1MiB";
            return false;
        }
        var unit = s[i..].Trim();
        long scale = unit switch
        {
            "" or "B" => 1,
            "KiB" => 1L << 10,
            "MiB" => 1L << 20,
            "GiB" => 1L << 30,
            _ => 0,
        };
        if (scale == 0)
        {
            error = $"'{text}' has an unknown unit '{unit}'; use B, KiB, MiB or GiB";
            return false;
        }
        if (number > long.MaxValue / scale)
        {
            error = $"'{text}' is too large";
            return false;
        }
        value = number * scale;
        return true;
    }

    public static string Format(long bytes) =>
        bytes % (1L << 30) == 0 && bytes > 0 ? $"{bytes >> 30}GiB"
        : bytes % (1L << 20) == 0 && bytes > 0 ? $"{bytes >> 20}MiB"
        : bytes % (1L << 10) == 0 && bytes > 0 ? $"{bytes >> 10}KiB"
        : bytes.ToString(CultureInfo.InvariantCulture);
}
