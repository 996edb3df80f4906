using System.Collections.Frozen;

namespace Fulcrum.Balancing;

/// <summary>The built-in balancing policies by the names configuration uses.</summary>
public static class BalancingPolicies
{
    public const string RoundRobin = "round_robin";
    public const string LeastRequests = "least_requests";
    public const string PowerOfTwo = "power_of_two";
    public const string Random = "random";
    public const string First = "first";

    /// <summary>Two random choices, fewer in flight wins: near-optimal spread with no shared state.</summary>
    public const string Default = PowerOfTwo;

    private static readonly FrozenDictionary<string, IBalancingPolicy> Policies = new IBalancingPolicy[]
    {
        new RoundRobinPolicy(),
        new LeastRequestsPolicy(),
        new PowerOfTwoPolicy(),
        new RandomPolicy(),
        new FirstPolicy(),
    }.ToFrozenDictionary(p => p.Name, StringComparer.Ordinal);

    public static IReadOnlyCollection<string> Names { get; } = [RoundRobin, LeastRequests, PowerOfTwo, Random, First];

    public static IBalancingPolicy Get(string name) =>
        Policies.TryGetValue(name, out var policy) ? policy : throw new ArgumentException($"unknown balancing policy '{name}'", nameof(name));
}
