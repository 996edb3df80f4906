using System.IO.Pipelines;
using System.Net;
using Fulcrum.Forwarding.Http1;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;

namespace Fulcrum.Forwarding;

/// <summary>
/// A request Kestrel's HTTP layer read (HTTP/2, h2c, and what Fulcrum's HTTP/1.1 front end hands
/// over: upgrades, <c>Expect</c>, targets it does not route itself), in the pipeline's shape.
/// </summary>
internal sealed class KestrelExchange(HttpContext context) : ProxyExchange
{
    private string? _upstreamTarget;

    public HttpContext Context { get; } = context;

    private HttpRequest Request => Context.Request;

    private HttpResponse Response => Context.Response;

    public override string Method => Request.Method;

    public override string Protocol => Request.Protocol;

    public override string Scheme => Tls is null ? Request.Scheme : "https";

    public override string RouteHost => Request.Host.Host;

    public override string? Authority => Request.Host.HasValue ? Request.Host.Value : null;

    public override string Path => Request.Path.Value ?? "/";

    public override string UpstreamTarget => _upstreamTarget ??= RequestTarget.PathAndQuery(Request, Context.Features.Get<IHttpRequestFeature>()?.RawTarget);

    public override IPAddress? RemoteIp => Context.Connection.RemoteIpAddress;

    private Tls.TlsConnection? _tls;
    private bool _tlsRead;

    // Read by the scheme, the upstream head, the pipeline and the access log: looked up once.
    public override Tls.TlsConnection? Tls
    {
        get
        {
            if (!_tlsRead)
            {
                _tls = Context.Features.Get<Tls.TlsConnection>();
                _tlsRead = true;
            }
            return _tls;
        }
    }

    public override StringValues Header(string name) => Request.Headers[name];

    public override bool CanHaveBody => Context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? Request.ContentLength > 0;

    public override long? ContentLength => Request.ContentLength;

    public override PipeReader BodyReader => Request.BodyReader;

    public override CancellationToken Aborted => Context.RequestAborted;

    public override void Abort() => Context.Abort();

    internal override void WriteHeaders(ref HeadWriter writer) => Http1RequestHead.WriteHeaders(ref writer, Request.Headers);

    public override bool HasStarted => Response.HasStarted;

    public override int Status
    {
        get => Response.StatusCode;
        set => Response.StatusCode = value;
    }

    public override void AddHeader(string name, string value) => Response.Headers.Append(name, value);

    public override void SetHeader(string name, string value) => Response.Headers[name] = value;

    public override void ClearResponse() => Response.Clear();

    public override async ValueTask StartAsync(CancellationToken cancellationToken)
    {
        // Kestrel's StartAsync only queues chunked headers; the flush puts them on the wire.
        await Response.StartAsync(cancellationToken).ConfigureAwait(false);
        await Response.BodyWriter.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override Memory<byte> GetBodyMemory() => Response.BodyWriter.GetMemory();

    public override void AdvanceBody(int count) => Response.BodyWriter.Advance(count);

    public override ValueTask<FlushResult> FlushBodyAsync(CancellationToken cancellationToken) => Response.BodyWriter.FlushAsync(cancellationToken);

    public override ValueTask WriteBodyAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken) => Response.Body.WriteAsync(body, cancellationToken);

    public override bool SupportsTrailers => Response.SupportsTrailers();

    public override void AddTrailer(string name, string value) => Response.AppendTrailer(name, value);

    private const int LingerBytes = 1 << 20;
    private static readonly TimeSpan LingerTime = TimeSpan.FromSeconds(1);

    /// <summary>
    /// After refusing a request, read and discard what is left of its body for a moment, as
    /// nginx's lingering close does. Kestrel closes a "Connection: close" response promptly only
    /// once the body is consumed, and closing on unread data makes the kernel send a reset that
    /// can destroy the answer before the client reads it. A body that outlasts the budget is cut.
    /// </summary>
    public override async ValueTask LingerAsync()
    {
        try
        {
            await Response.Body.FlushAsync(Context.RequestAborted).ConfigureAwait(false);
            using var deadline = new CancellationTokenSource(LingerTime);
            var buffer = new byte[16 * 1024];
            var total = 0L;
            int read;
            while ((read = await Request.Body.ReadAsync(buffer, deadline.Token).ConfigureAwait(false)) > 0)
            {
                total += read;
                if (total > LingerBytes)
                {
                    Context.Abort();
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The client kept the connection open without finishing its body: cut it.
            Context.Abort();
        }
        catch (Exception e) when (e is IOException or BadHttpRequestException or InvalidOperationException)
        {
            // The body cannot be read (malformed, or the client left): Kestrel closes the connection itself.
        }
    }
}
