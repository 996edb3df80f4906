using System.Net.Sockets;

namespace Fulcrum.Forwarding;

/// <summary>A TLS stream that closes its socket with it (the SslStream owns only its NetworkStream, which does not own the socket).</summary>
internal sealed class SocketOwningStream(System.Net.Security.SslStream ssl, Socket socket) : Stream
{
    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ssl.ReadAsync(buffer, cancellationToken);
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ssl.ReadAsync(buffer, offset, count, cancellationToken);
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => ssl.WriteAsync(buffer, cancellationToken);
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ssl.WriteAsync(buffer, offset, count, cancellationToken);
    public override Task FlushAsync(CancellationToken cancellationToken) => ssl.FlushAsync(cancellationToken);
    public override int Read(byte[] buffer, int offset, int count) => ssl.Read(buffer, offset, count);
    public override void Write(byte[] buffer, int offset, int count) => ssl.Write(buffer, offset, count);
    public override void Flush() => ssl.Flush();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ssl.Dispose();
            socket.Dispose();
        }
        base.Dispose(disposing);
    }
}
