namespace Fulcrum.Runtime;

/// <summary>What a reload changed, as names an operator recognises (pool, pool/address).</summary>
public sealed class ReloadChanges
{
    public List<string> PoolsAdded { get; } = [];

    public List<string> PoolsRemoved { get; } = [];

    public List<string> PoolsChanged { get; } = [];

    public List<string> BackendsAdded { get; } = [];

    public List<string> BackendsRemoved { get; } = [];

    /// <summary>Kept backends whose weight, name or limit changed (their state is kept).</summary>
    public List<string> BackendsUpdated { get; } = [];

    public bool RoutesChanged { get; set; }

    public List<string> ListenersAdded { get; } = [];

    public List<string> ListenersRemoved { get; } = [];

    /// <summary>Sections that changed but apply only at the next start (admin, access_log …).</summary>
    public List<string> NeedRestart { get; } = [];

    public bool Any => PoolsAdded.Count + PoolsRemoved.Count + PoolsChanged.Count + BackendsAdded.Count + BackendsRemoved.Count
        + BackendsUpdated.Count + ListenersAdded.Count + ListenersRemoved.Count > 0 || RoutesChanged;
}
