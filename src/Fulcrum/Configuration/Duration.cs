using System.Globalization;

namespace Fulcrum.Configuration;

/// <summary>
/// Durations as operators write them: <c>250ms</c>, <c>10s</c>, <c>5m</c>, <c>1h</c>, or a sum such as <c>1m30s</c>.
/// A bare number is refused: "30" could mean seconds or milliseconds, and guessing wrong costs an outage.
/// </summary>
public static class Duration
{
    /// <summary>
    /// The longest duration accepted: timers in .NET (and so every timeout here) cannot wait much
    /// longer than 24.8 days (int.MaxValue milliseconds).
    /// </summary>
    public static TimeSpan Max { get; } = TimeSpan.FromDays(24);

    public static bool TryParse(string text, out TimeSpan value, out string error) => TryParse(text, Max, out value, out error);

    /// <summary>Parses a duration up to <paramref name="max"/> (an age that no timer waits for, like HSTS's max-age, may be years).</summary>
    public static bool TryParse(string text, TimeSpan max, out TimeSpan value, out string error)
    {
        value = TimeSpan.Zero;
        error = "";
        var s = text.Trim();
        if (s.Length == 0)
        {
            error = "a duration is empty; write it like 250ms, 10s, 5m or 1h";
            return false;
        }

        var total = TimeSpan.Zero;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.'))
            {
                i++;
            }
            if (start == i)
            {
                error = $"'{text}' is not a duration; write it like 250ms, 10s, 5m or 1h";
                return false;
            }
            if (!double.TryParse(s.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                error = $"'{text}' is not a duration; write it like 250ms, 10s, 5m or 1h";
                return false;
            }
            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i]))
            {
                i++;
            }
            var unit = s.AsSpan(unitStart, i - unitStart);
            double ms;
            switch (unit)
            {
                case "ms": ms = number; break;
                case "s": ms = number * 1000; break;
                case "m": ms = number * 60_000; break;
                case "h": ms = number * 3_600_000; break;
                case "d": ms = number * 86_400_000; break;
                case "" when i < s.Length:
                    error = $"'{text}' is not a duration; write it like 250ms, 10s, 5m or 1h";
                    return false;
                case "":
                    error = $"'{text}' has no unit; write it like {s}s or {s}ms";
                    return false;
                default:
                    error = $"'{text}' has an unknown unit '{unit}'; use ms, s, m, h or d";
                    return false;
            }
            if (double.IsInfinity(ms) || ms > max.TotalMilliseconds || (total += TimeSpan.FromMilliseconds(ms)) > max)
            {
                error = $"'{text}' is too long; the longest duration is {Format(max)}";
                return false;
            }
        }
        value = total;
        return true;
    }

    /// <summary>Formats a duration the way it would be written in configuration.</summary>
    public static string Format(TimeSpan value)
    {
        if (value == TimeSpan.Zero)
        {
            return "0s";
        }
        if (value.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            return ((long)value.TotalMilliseconds).ToString(CultureInfo.InvariantCulture) + "ms";
        }
        if (value.Ticks % TimeSpan.TicksPerDay == 0)
        {
            return ((long)value.TotalDays).ToString(CultureInfo.InvariantCulture) + "d";
        }
        if (value.Ticks % TimeSpan.TicksPerHour == 0)
        {
            return ((long)value.TotalHours).ToString(CultureInfo.InvariantCulture) + "h";
        }
        if (value.Ticks % TimeSpan.TicksPerMinute == 0)
        {
            return ((long)value.TotalMinutes).ToString(CultureInfo.InvariantCulture) + "m";
        }
        return ((long)value.TotalSeconds).ToString(CultureInfo.InvariantCulture) + "s";
    }
}
