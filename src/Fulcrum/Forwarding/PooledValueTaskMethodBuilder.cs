using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace Fulcrum.Forwarding;

/// <summary>
/// An async method builder for the request path's <see cref="ValueTask{TResult}"/> methods: when
/// the method has to wait, its state lives in a box taken from a pool shared by every thread, and
/// goes back to it once the caller has read the result.
/// </summary>
/// <remarks>
/// The runtime's <see cref="PoolingAsyncValueTaskMethodBuilder{TResult}"/> keeps one box per
/// thread and one per core. A proxy has hundreds of requests waiting at once and finishes them in
/// bursts, so most boxes fell out of that cache and were allocated anyway: with it, `bench/alloc.sh`
/// still counted about 1,000 bytes of boxes per request (from 1,080), and none with this builder.
/// Here a box that finds the thread's slot taken goes to a shared stack of <see cref="Capacity"/>
/// boxes per method.
/// The rule of every pooled ValueTask holds: await the result once, and never after that.
/// </remarks>
/// <typeparam name="TResult">What the method returns.</typeparam>
public struct PooledValueTaskMethodBuilder<TResult>
{
    /// <summary>Boxes kept per async method when none waits on them.</summary>
    internal const int Capacity = 256;

    private Box? _box;
    private TResult _result;
    private Exception? _exception;

    public static PooledValueTaskMethodBuilder<TResult> Create() => default;

    public readonly ValueTask<TResult> Task =>
        _box is { } box ? new ValueTask<TResult>(box, box.Version)
        : _exception is { } exception ? ValueTask.FromException<TResult>(exception)
        : new ValueTask<TResult>(_result);

    /// <summary>The same outcome without the result, for <see cref="PooledValueTaskMethodBuilder"/>.</summary>
    internal readonly ValueTask UntypedTask =>
        _box is { } box ? new ValueTask(box, box.Version)
        : _exception is { } exception ? ValueTask.FromException(exception)
        : default;

    // Start only runs the state machine, saving and restoring the thread's contexts around it; the
    // runtime's builders all share that step, and AsyncTaskMethodBuilder's keeps no state.
    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine => default(AsyncTaskMethodBuilder).Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
        // Never called for a struct state machine boxed by this builder.
    }

    public void SetResult(TResult result)
    {
        if (_box is null)
        {
            _result = result; // finished without waiting: no box at all
        }
        else
        {
            _box.SetResult(result);
        }
    }

    public void SetException(Exception exception)
    {
        if (_box is null)
        {
            _exception = exception;
        }
        else
        {
            _box.SetException(exception);
        }
    }

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.OnCompleted(BoxFor(ref stateMachine).MoveNextAction);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.UnsafeOnCompleted(BoxFor(ref stateMachine).MoveNextAction);

    /// <summary>
    /// The box this method's state lives in from its first wait on: rented, with the state
    /// machine copied in, at the first wait; the same one at each later wait.
    /// </summary>
    private Box<TStateMachine> BoxFor<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine
    {
        var context = ExecutionContext.Capture();
        if (_box is Box<TStateMachine> existing)
        {
            existing.Context = context;
            return existing;
        }
        // The field is set before the copy, so the copy (the one that runs from now on) knows its box.
        var box = Box<TStateMachine>.Rent();
        _box = box;
        box.StateMachine = stateMachine;
        box.Context = context;
        return box;
    }

    /// <summary>The awaitable side of a box: completed once, read once, then reset for the next use.</summary>
    internal abstract class Box : IValueTaskSource<TResult>, IValueTaskSource
    {
        private protected ManualResetValueTaskSourceCore<TResult> _core;

        public short Version => _core.Version;

        public void SetResult(TResult result) => _core.SetResult(result);

        public void SetException(Exception exception) => _core.SetException(exception);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        public TResult GetResult(short token)
        {
            try
            {
                return _core.GetResult(token);
            }
            finally
            {
                Return();
            }
        }

        void IValueTaskSource.GetResult(short token) => GetResult(token);

        private protected abstract void Return();
    }

    private sealed class Box<TStateMachine> : Box
        where TStateMachine : IAsyncStateMachine
    {
        private static readonly ContextCallback RunInContext = static s => ((Box<TStateMachine>)s!).StateMachine.MoveNext();
        private static readonly Box<TStateMachine>?[] Shared = new Box<TStateMachine>?[Capacity];
        private static int _sharedCount;

        [ThreadStatic]
        private static Box<TStateMachine>? _threadSlot;

        public TStateMachine StateMachine = default!;
        public ExecutionContext? Context;

        private Action? _moveNext;

        public Action MoveNextAction => _moveNext ??= MoveNext;

        public static Box<TStateMachine> Rent()
        {
            var box = _threadSlot;
            if (box is not null)
            {
                _threadSlot = null;
                return box;
            }
            lock (Shared)
            {
                if (_sharedCount > 0)
                {
                    box = Shared[--_sharedCount];
                    Shared[_sharedCount] = null;
                    return box!;
                }
            }
            return new Box<TStateMachine>();
        }

        private void MoveNext()
        {
            if (Context is { } context)
            {
                ExecutionContext.Run(context, RunInContext, this);
            }
            else
            {
                StateMachine.MoveNext();
            }
        }

        private protected override void Return()
        {
            StateMachine = default!;
            Context = null;
            _core.Reset();
            if (_threadSlot is null)
            {
                _threadSlot = this;
                return;
            }
            lock (Shared)
            {
                if (_sharedCount < Shared.Length)
                {
                    Shared[_sharedCount++] = this;
                }
            }
        }
    }
}

/// <summary>The same as <see cref="PooledValueTaskMethodBuilder{TResult}"/>, for methods that return a plain <see cref="ValueTask"/>.</summary>
public struct PooledValueTaskMethodBuilder
{
    private PooledValueTaskMethodBuilder<bool> _inner;

    public static PooledValueTaskMethodBuilder Create() => default;

    public readonly ValueTask Task => _inner.UntypedTask;

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine => _inner.Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine) => _inner.SetStateMachine(stateMachine);

    public void SetResult() => _inner.SetResult(true);

    public void SetException(Exception exception) => _inner.SetException(exception);

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine => _inner.AwaitOnCompleted(ref awaiter, ref stateMachine);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine => _inner.AwaitUnsafeOnCompleted(ref awaiter, ref stateMachine);
}
