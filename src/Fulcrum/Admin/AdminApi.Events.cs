using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
using Fulcrum.Configuration;
using Fulcrum.Health;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Admin;

internal sealed partial class AdminApi
{
    /// <summary>GET events: health changes and audit events, oldest first; filter by pool, backend and since (a time, or a duration ago).</summary>
    private async Task EventsAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var pool = query["pool"].ToString();
        var backend = query["backend"].ToString();
        DateTimeOffset? since = null;
        if (query["since"].ToString() is { Length: > 0 } sinceText)
        {
            if (DateTimeOffset.TryParse(sinceText, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
            {
                since = at;
            }
            else if (Duration.TryParse(sinceText, out var ago, out _))
            {
                since = _runtime.Time.GetUtcNow() - ago;
            }
            else
            {
                await Error(context, 400, "bad_since", $"since: '{sinceText}' is neither a time (2026-11-21T10:00:00Z) nor a duration ago (10m)").ConfigureAwait(false);
                return;
            }
        }
        var events = new List<EventView>();
        foreach (var p in _runtime.Current.Pools.Values)
        {
            foreach (var b in p.Backends)
            {
                events.AddRange(b.History.Snapshot().Select(EventView.Of));
            }
        }
        events.AddRange(Audit.Snapshot().Select(EventView.Of));
        var filtered = events
            .Where(e => (pool.Length == 0 || e.Pool == pool) && (backend.Length == 0 || e.Backend == backend) && (since is null || e.At >= since))
            .OrderBy(e => e.At).ThenBy(e => e.Type, StringComparer.Ordinal).ThenBy(e => e.Sequence)
            .ToList();
        await Ok(context, filtered).ConfigureAwait(false);
    }

    /// <summary>GET events/stream: server-sent events, one per health change or audit event, as they happen.</summary>
    private async Task EventStreamAsync(HttpContext context)
    {
        var channel = Channel.CreateBounded<EventView>(new BoundedChannelOptions(1000) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        void OnHealth(HealthEvent e) => channel.Writer.TryWrite(EventView.Of(e));
        void OnAudit(AuditEvent e) => channel.Writer.TryWrite(EventView.Of(e));
        _runtime.Health.Changed += OnHealth;
        Audit.Added += OnAudit;
        try
        {
            var response = context.Response;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache";
            await response.WriteAsync(": fulcrum events\n\n", context.RequestAborted).ConfigureAwait(false);
            await response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
            var compact = new JsonSerializerOptions(Json) { WriteIndented = false };
            while (!context.RequestAborted.IsCancellationRequested)
            {
                // A comment every 15 s keeps intermediaries from closing a quiet stream.
                using var heartbeat = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
                heartbeat.CancelAfter(TimeSpan.FromSeconds(15));
                try
                {
                    var e = await channel.Reader.ReadAsync(heartbeat.Token).ConfigureAwait(false);
                    await response.WriteAsync($"event: {e.Type}\nid: {e.Type}-{e.Sequence}\ndata: {JsonSerializer.Serialize(e, compact)}\n\n", context.RequestAborted).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
                {
                    await response.WriteAsync(": keep-alive\n\n", context.RequestAborted).ConfigureAwait(false);
                }
                await response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _runtime.Health.Changed -= OnHealth;
            Audit.Added -= OnAudit;
        }
    }
}
