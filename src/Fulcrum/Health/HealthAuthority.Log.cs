using Microsoft.Extensions.Logging;

namespace Fulcrum.Health;

public sealed partial class HealthAuthority
{
    private void LogChange(HealthEvent e) =>
        LogHealthChanged(e.Pool, e.Backend, HealthNames.Of(e.From), HealthNames.Of(e.To), HealthNames.Of(e.Source), e.Reason);

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "health: {Pool}/{Backend} {From} -> {To} ({Source}: {Reason})")]
    private partial void LogHealthChanged(string pool, string backend, string from, string to, string source, string reason);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "health: {Pool}/{Backend} not ejected after {Why}: {Ejected} of {Total} backends are already ejected (max_ejected_percent {Percent})")]
    private partial void LogEjectionRefused(string pool, string backend, string why, int ejected, int total, int percent);

}
