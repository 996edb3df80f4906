using Fulcrum.Configuration;
using Fulcrum.Runtime;

namespace Fulcrum.Health;

/// <summary>Runs one probe of one backend. The prober owns timing; the probe only checks.</summary>
public interface IHealthProbe
{
    /// <summary>
    /// Probes <paramref name="backend"/> as <paramref name="config"/> says. Never throws for a failed
    /// check: a failure is a <see cref="ProbeResult"/> whose detail says what went wrong.
    /// <paramref name="cancellationToken"/> fires at the probe timeout or when the prober stops.
    /// </summary>
    Task<ProbeResult> ProbeAsync(ActiveHealthConfig config, BackendState backend, CancellationToken cancellationToken);
}
