using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Fulcrum.Forwarding;

/// <summary>How a client asked to turn its request into a tunnel.</summary>
internal enum UpgradeKind
{
    None,

    /// <summary>HTTP/1.1 <c>Connection: Upgrade</c> + <c>Upgrade: …</c> (RFC 9110 §7.8).</summary>
    Http11,

    /// <summary>HTTP/2 extended CONNECT with <c>:protocol = websocket</c> (RFC 8441), sent upstream as an HTTP/1.1 upgrade.</summary>
    ExtendedConnect,
}

/// <summary>
/// A request that asks to become a tunnel: its kind and the <c>Upgrade</c> value to send upstream.
/// Whether the tunnel is a WebSocket follows from the protocol the backend switches to.
/// </summary>
internal readonly record struct UpgradeRequest(UpgradeKind Kind, string Protocols)
{
    public bool Any => Kind != UpgradeKind.None;

    /// <summary>
    /// The method routes and retry rules see: an HTTP/2 WebSocket is a GET, as its HTTP/1.1 twin
    /// is, so both match the same routes.
    /// </summary>
    public string EffectiveMethod(string method) => Kind == UpgradeKind.ExtendedConnect ? HttpMethods.Get : method;

    /// <summary>Whether the client offered <paramref name="protocol"/> (the token a backend's 101 chose).</summary>
    public bool Offers(string protocol)
    {
        if (protocol.Length == 0)
        {
            return false;
        }
        foreach (var part in Protocols.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (string.Equals(part, protocol, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Reads the upgrade a request asks for. <c>h2c</c> is never honoured (an h2c upgrade through a
    /// proxy is a known way to smuggle requests past it): it is dropped from the list, and a request
    /// that asked only for it is forwarded as a plain request. Null <paramref name="refusal"/> unless
    /// the request is an extended CONNECT for a protocol Fulcrum cannot carry.
    /// </summary>
    public static UpgradeRequest Of(HttpContext context, out string? refusal)
    {
        refusal = null;
        var request = context.Request;
        if (HttpMethods.IsConnect(request.Method))
        {
            if (context.Features.Get<IHttpExtendedConnectFeature>() is { IsExtendedConnect: true } connect)
            {
                if (string.Equals(connect.Protocol, "websocket", StringComparison.OrdinalIgnoreCase))
                {
                    return new UpgradeRequest(UpgradeKind.ExtendedConnect, "websocket");
                }
                refusal = $"extended CONNECT for protocol '{connect.Protocol}' is not supported; only websocket is";
                return default;
            }
            // A forward proxy's tunnel to anywhere: not something a reverse proxy passes on.
            refusal = "CONNECT tunnels are not supported (Fulcrum is a reverse proxy); only WebSockets over HTTP/2 extended CONNECT are";
            return default;
        }
        // Most requests stop here, on one header look-up, before any feature is fetched.
        var upgrade = request.Headers.Upgrade;
        if (upgrade.Count == 0 || context.Features.Get<IHttpUpgradeFeature>() is not { IsUpgradableRequest: true })
        {
            return default;
        }
        var kept = new List<string>(1);
        foreach (var value in upgrade)
        {
            if (value is null)
            {
                continue;
            }
            foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (part.StartsWith("h2c", StringComparison.OrdinalIgnoreCase) && (part.Length == 3 || part[3] == '/'))
                {
                    continue;
                }
                kept.Add(part);
            }
        }
        return kept.Count == 0 ? default : new UpgradeRequest(UpgradeKind.Http11, string.Join(", ", kept));
    }
}
