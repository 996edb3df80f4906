using System.Reflection;
using System.Runtime.CompilerServices;
using Fulcrum.Forwarding;

namespace Fulcrum.Tests.Forwarding;

/// <summary>
/// The request path's pooled async builder behaves as an ordinary async ValueTask method (results,
/// exceptions, cancellations, the execution context) and reuses the state of a method that waited.
/// </summary>
public class PooledValueTaskMethodBuilderTests
{
    private static readonly AsyncLocal<string?> Ambient = new();

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<int> AddAsync(Task<int> pending, int add) => await pending.ConfigureAwait(false) + add;

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    private static async ValueTask ThrowAfterAsync(Task pending, Exception exception)
    {
        await pending.ConfigureAwait(false);
        throw exception;
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<string?> AmbientAcrossWaitsAsync(Task first, Task second)
    {
        await first.ConfigureAwait(false);
        var seen = Ambient.Value;
        Ambient.Value = "changed inside";
        await second.ConfigureAwait(false);
        return seen + "|" + Ambient.Value;
    }

    private static object? BoxOf(ValueTask<int> task) =>
        typeof(ValueTask<int>).GetField("_obj", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(task);

    /// <summary>The result of a task that has completed (reading it is what returns its box).</summary>
    private static int Finished(ValueTask<int> task)
    {
        Assert.True(task.IsCompletedSuccessfully);
        return task.Result;
    }

    [Fact]
    public async Task A_method_that_does_not_wait_completes_at_once_without_a_box()
    {
        var task = AddAsync(Task.FromResult(40), 2);
        Assert.True(task.IsCompletedSuccessfully);
        Assert.Null(BoxOf(task));
        Assert.Equal(42, await task);
    }

    [Fact]
    public async Task A_method_that_waits_completes_with_its_result()
    {
        var pending = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var task = AddAsync(pending.Task, 2);
        Assert.False(task.IsCompleted);
        pending.SetResult(40);
        Assert.Equal(42, await task);
    }

    [Fact]
    public async Task Exceptions_reach_the_caller_unchanged_whether_or_not_the_method_waited()
    {
        var thrown = new InvalidOperationException("boom");
        var sync = ThrowAfterAsync(Task.CompletedTask, thrown);
        Assert.Same(thrown, await Assert.ThrowsAsync<InvalidOperationException>(async () => await sync));

        var pending = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new OperationCanceledException("stopped");
        var later = ThrowAfterAsync(pending.Task, cancelled);
        pending.SetResult();
        Assert.Same(cancelled, await Assert.ThrowsAsync<OperationCanceledException>(async () => await later));
    }

    [Fact]
    public async Task The_execution_context_flows_in_and_changes_inside_stay_inside()
    {
        Ambient.Value = "outer";
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var second = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var task = AmbientAcrossWaitsAsync(first.Task, second.Task);
        Assert.Equal("outer", Ambient.Value);
        _ = Task.Run(() =>
        {
            Ambient.Value = "another thread's";
            first.SetResult();
            second.SetResult();
        });
        Assert.Equal("outer|changed inside", await task);
        Assert.Equal("outer", Ambient.Value);
    }

    [Fact]
    public Task A_finished_method_s_box_serves_the_next_call() => Task.Run(() =>
    {
        // Completed inline on this thread (a pool thread: no synchronization context to post to),
        // so the box goes back here and is taken again here.
        var pending = new TaskCompletionSource<int>();
        var first = AddAsync(pending.Task, 1);
        var box = BoxOf(first);
        Assert.NotNull(box);
        pending.SetResult(1);
        Assert.Equal(2, Finished(first));

        var next = new TaskCompletionSource<int>();
        var second = AddAsync(next.Task, 1);
        Assert.Same(box, BoxOf(second));
        next.SetResult(2);
        Assert.Equal(3, Finished(second));
    });

    [Fact]
    public Task Boxes_of_many_requests_finished_at_once_are_kept_for_the_next_ones() => Task.Run(() =>
    {
        // The case the runtime's per-thread cache misses: hundreds wait, then finish in one burst.
        const int Waiting = 300;
        var firstBoxes = new HashSet<object>(ReferenceEqualityComparer.Instance);
        RunBurst(firstBoxes);
        var secondBoxes = new HashSet<object>(ReferenceEqualityComparer.Instance);
        RunBurst(secondBoxes);
        var reused = secondBoxes.Count(firstBoxes.Contains);
        Assert.True(reused >= PooledValueTaskMethodBuilder<int>.Capacity, $"only {reused} of {Waiting} boxes were reused");
        return;

        static void RunBurst(HashSet<object> boxes)
        {
            var sources = new TaskCompletionSource<int>[Waiting];
            var tasks = new ValueTask<int>[Waiting];
            for (var i = 0; i < Waiting; i++)
            {
                sources[i] = new TaskCompletionSource<int>();
                tasks[i] = AddAsync(sources[i].Task, i);
                boxes.Add(BoxOf(tasks[i])!);
            }
            for (var i = 0; i < Waiting; i++)
            {
                sources[i].SetResult(1);
                Assert.Equal(i + 1, Finished(tasks[i]));
            }
        }
    });
}
