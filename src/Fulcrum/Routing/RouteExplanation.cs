namespace Fulcrum.Routing;

/// <summary>How one route fared against a request: whether it matched, and why or why not.</summary>
public sealed record RouteExplanation(string Route, bool Matched, string Why);
