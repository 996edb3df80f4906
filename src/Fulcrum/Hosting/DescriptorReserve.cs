using Microsoft.Win32.SafeHandles;

namespace Fulcrum.Hosting;

/// <summary>
/// File descriptors held back from clients. When accepting fails because the process has none
/// left, these are given up at once, so the runtime keeps what it needs to go on (the GC reads
/// <c>/proc/meminfo</c>, an assembly loads, the configuration is read: with none, the process was
/// seen to abort with "Out of memory"), and accepting stays paused until they can be taken back,
/// which is when clients have left. One reserve for the process: every listener pauses with it.
/// </summary>
internal static class DescriptorReserve
{
    private static readonly object Lock = new();
    private static readonly List<SafeFileHandle> Held = [];
    private static int _size = -1;

    /// <summary>True while the reserve is given up: listeners do not accept.</summary>
    public static bool Released
    {
        get
        {
            lock (Lock)
            {
                return _size >= 0 && Held.Count < _size;
            }
        }
    }

    /// <summary>Takes the reserve at start-up: a sixteenth of the limit, between 32 and 256 descriptors.</summary>
    public static void Take()
    {
        lock (Lock)
        {
            if (_size < 0)
            {
                _size = long.TryParse(FulcrumTransport.OpenFileLimit(), out var limit) ? (int)Math.Clamp(limit / 16, 32, 256) : 32;
            }
            TryRetakeLocked();
        }
    }

    /// <summary>Gives the reserve up: the process ran out of descriptors.</summary>
    public static void Release()
    {
        lock (Lock)
        {
            foreach (var handle in Held)
            {
                handle.Dispose();
            }
            Held.Clear();
        }
    }

    /// <summary>Takes the whole reserve back if that many descriptors are free; false (holding none) if not.</summary>
    public static bool TryRetake()
    {
        lock (Lock)
        {
            return TryRetakeLocked();
        }
    }

    private static bool TryRetakeLocked()
    {
        try
        {
            while (Held.Count < _size)
            {
                Held.Add(File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read));
            }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            foreach (var handle in Held)
            {
                handle.Dispose();
            }
            Held.Clear();
            return false;
        }
    }
}
