using System.Globalization;
using System.Net;
using Yarp.ReverseProxy.Configuration;

// Usage: Fulcrum.Bench.Yarp PORT BACKEND BACKEND... (each host:port). Binds 127.0.0.1 only.
var port = int.Parse(args[0], CultureInfo.InvariantCulture);
var builder = WebApplication.CreateBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port));
var destinations = args.Skip(1).Select((b, i) => (Name: $"b{i + 1}", Address: $"http://{b}/"))
    .ToDictionary(d => d.Name, d => new DestinationConfig { Address = d.Address });
builder.Services.AddReverseProxy().LoadFromMemory(
    [new RouteConfig { RouteId = "all", ClusterId = "backends", Match = new RouteMatch { Path = "{**catch-all}" } }],
    [new ClusterConfig { ClusterId = "backends", LoadBalancingPolicy = "RoundRobin", Destinations = destinations }]);
var app = builder.Build();
app.MapReverseProxy();
app.Run();
