using System.Diagnostics;
using Fulcrum.Configuration;
using Fulcrum.Runtime;

namespace Fulcrum.Hosting;

/// <summary>The candidates of a request: admission under the pool's limits, and who is left to try.</summary>
internal sealed partial class RequestPipeline
{
    /// <summary>
    /// Picks a backend with room under its limit of requests in flight, and counts the request on
    /// it. When none has room the request waits in the pool's queue (if it has a place) until a
    /// request ends somewhere or <c>queue_timeout</c> passes; null means saturated.
    /// </summary>
    private static async ValueTask<BackendState?> AdmitAsync(PoolState pool, BackendState[] candidates, CancellationToken aborted)
    {
        var limits = pool.Config.Limits;
        var deadline = Stopwatch.GetTimestamp() + (long)(limits.QueueTimeout.TotalSeconds * Stopwatch.Frequency);
        var queued = false;
        try
        {
            while (true)
            {
                limits = pool.Config.Limits; // a reload may have changed them while we waited
                // Taken before looking, so a request that ends after the look still wakes us.
                var roomFreed = pool.RoomMayBeFree;
                var withRoom = WithRoom(candidates, limits);
                if (withRoom.Length > 0)
                {
                    var backend = pool.Policy.Pick(pool, withRoom);
                    if (backend.TryBeginRequest(backend.MaxRequests(limits)))
                    {
                        return backend;
                    }
                    continue; // another request took the last slot first
                }
                if (!queued)
                {
                    if (limits.MaxPending == 0 || !pool.TryJoinQueue())
                    {
                        return null;
                    }
                    queued = true;
                    continue; // look once more now that a freed slot will signal us
                }
                var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
                if (remaining <= TimeSpan.Zero)
                {
                    return null;
                }
                try
                {
                    await roomFreed.WaitAsync(remaining, aborted).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    return null;
                }
            }
        }
        finally
        {
            if (queued)
            {
                pool.LeaveQueue();
            }
        }
    }

    private static BackendState[] WithRoom(BackendState[] candidates, LimitsConfig limits) =>
        Filter(candidates, limits, static (b, limits) => b.MaxRequests(limits) is var max && (max <= 0 || b.InFlight < max));

    /// <summary>
    /// The candidates that <paramref name="keep"/> accepts, in order: the same array when it accepts
    /// them all (the common case, which then allocates nothing), else a new one. Each candidate is
    /// judged once: a count taken in one pass and a copy in a second could disagree when another
    /// request changed a backend's in-flight count in between.
    /// </summary>
    private static BackendState[] Filter<TState>(BackendState[] candidates, TState state, Func<BackendState, TState, bool> keep)
    {
        Span<bool> kept = candidates.Length <= 256 ? stackalloc bool[candidates.Length] : new bool[candidates.Length];
        var count = 0;
        for (var i = 0; i < candidates.Length; i++)
        {
            if (kept[i] = keep(candidates[i], state))
            {
                count++;
            }
        }
        if (count == candidates.Length)
        {
            return candidates;
        }
        var result = new BackendState[count];
        var next = 0;
        for (var i = 0; i < candidates.Length; i++)
        {
            if (kept[i])
            {
                result[next++] = candidates[i];
            }
        }
        return result;
    }

    private static BackendState[] StillAvailable(BackendState[] candidates, BackendState[] available) =>
        Filter(candidates, available, static (c, available) => Array.IndexOf(available, c) >= 0);

    private static BackendState[] Without(BackendState[] candidates, BackendState tried)
    {
        var next = new BackendState[candidates.Length - 1];
        var i = 0;
        foreach (var c in candidates)
        {
            if (!ReferenceEquals(c, tried))
            {
                next[i++] = c;
            }
        }
        return next;
    }
}
