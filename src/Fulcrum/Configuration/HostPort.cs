using System.Globalization;
using System.Net;

namespace Fulcrum.Configuration;

/// <summary>
/// A <c>host:port</c> address as written in configuration. <see cref="Host"/> is an IP literal
/// (IPv6 without brackets), a DNS name, or <c>*</c> for every interface on a listener.
/// </summary>
public sealed record HostPort(string Host, int Port)
{
    /// <summary>The parsed IP when <see cref="Host"/> is a literal, else null (a name to resolve).</summary>
    public IPAddress? Ip => IPAddress.TryParse(Host, out var ip) ? ip : null;

    public bool IsAnyHost => Host == "*";

    public override string ToString() =>
        Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port.ToString(CultureInfo.InvariantCulture)}" : $"{Host}:{Port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Host part as it goes into a URI authority (IPv6 in brackets).</summary>
    public string UriHost => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]" : Host;

    public static bool TryParse(string text, bool allowPortZero, out HostPort? value, out string error)
    {
        value = null;
        error = "";
        var s = text.Trim();
        string host;
        string portText;
        if (s.StartsWith('['))
        {
            var close = s.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= s.Length || s[close + 1] != ':')
            {
                error = $"'{text}' is not an address; write an IPv6 address as [::1]:8080";
                return false;
            }
            host = s[1..close];
            portText = s[(close + 2)..];
            if (!IPAddress.TryParse(host, out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                error = $"'{text}' is not an address: '{host}' is not an IPv6 address";
                return false;
            }
        }
        else
        {
            var colon = s.LastIndexOf(':');
            if (colon < 0)
            {
                error = $"'{text}' has no port; write it as host:port, like 127.0.0.1:8080";
                return false;
            }
            if (s.IndexOf(':', StringComparison.Ordinal) != colon)
            {
                error = $"'{text}' is not an address; write an IPv6 address in brackets, like [::1]:8080";
                return false;
            }
            host = s[..colon];
            portText = s[(colon + 1)..];
            if (host.Length == 0)
            {
                error = $"'{text}' has no host; write it as host:port, or *:port for every interface";
                return false;
            }
            if (host != "*" && !IsValidHostName(host))
            {
                error = $"'{text}' is not an address: '{host}' is neither an IP address nor a host name";
                return false;
            }
        }

        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535 || (port == 0 && !allowPortZero))
        {
            error = $"'{text}' has a bad port '{portText}'; a port is a number from 1 to 65535";
            return false;
        }
        value = new HostPort(host, port);
        return true;
    }

    private static bool IsValidHostName(string host)
    {
        if (IPAddress.TryParse(host, out _))
        {
            return true;
        }
        if (host.Length > 253)
        {
            return false;
        }
        foreach (var label in host.Split('.'))
        {
            if (label.Length is 0 or > 63 || label[0] == '-' || label[^1] == '-')
            {
                return false;
            }
            foreach (var c in label)
            {
                if (!char.IsAsciiLetterOrDigit(c) && c != '-' && c != '_')
                {
                    return false;
                }
            }
        }
        return true;
    }
}
