namespace Fulcrum.Admin;

/// <summary>
/// A certificate as <c>GET /api/v1/certificates</c> and <c>fulcrum certs</c> show it: what it
/// covers, who issued it, when it ends, where it came from, which listeners serve it, and whether
/// the file on disk is what serves (<see cref="Problem"/> says why not).
/// </summary>
public sealed record CertificateView(
    IReadOnlyList<string> Names,
    string Subject,
    string Issuer,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter,
    int DaysLeft,
    string Sha256,
    string Source,
    string File,
    IReadOnlyList<string> Listeners,
    DateTimeOffset? ChangedAt,
    string? Problem);
