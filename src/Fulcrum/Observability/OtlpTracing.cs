using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Fulcrum.Observability;

/// <summary>Exports the <c>Fulcrum</c> source's spans over OTLP (HTTP/protobuf), when configured.</summary>
internal static class OtlpTracing
{
    /// <summary>Starts exporting; disposing the returned provider flushes what is left.</summary>
    public static IDisposable Start(Uri endpoint, string version)
    {
        // Given in code, the HTTP exporter wants the full traces URL; accept the collector's base too.
        var traces = endpoint.AbsolutePath is "" or "/" ? new Uri(endpoint, "/v1/traces") : endpoint;
        return Sdk.CreateTracerProviderBuilder()
            .SetResourceBuilder(ResourceBuilder.CreateDefault().AddService("fulcrum", serviceVersion: version))
            .AddSource(Tracing.SourceName)
            .AddOtlpExporter(o =>
            {
                o.Endpoint = traces;
                o.Protocol = OtlpExportProtocol.HttpProtobuf;
            })
            .Build();
    }
}
