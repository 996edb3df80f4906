using System.Text.Json;
using Fulcrum.Configuration;
using Fulcrum.Observability;
using Microsoft.AspNetCore.Http;

namespace Fulcrum.Tests.Observability;

public class AccessLogFileTests
{
    [Fact]
    public async Task Create_FilePath_AppendsOneJsonLinePerRequest()
    {
        var path = Path.Combine(Path.GetTempPath(), $"fulcrum-access-{Guid.NewGuid():N}.log");
        await File.WriteAllTextAsync(path, "an earlier line\n");
        try
        {
            var log = AccessLog.Create(new AccessLogConfig(true, path, AccessLogConfig.JsonFormat));
            for (var i = 0; i < 3; i++)
            {
                var context = new DefaultHttpContext();
                context.Request.Method = "GET";
                context.Request.Path = $"/item/{i}";
                log.Write(context, new RequestRecord($"id-{i}") { Status = 200, Route = "r", Pool = "p" });
            }
            await log.DisposeAsync();

            var lines = await File.ReadAllLinesAsync(path);
            Assert.Equal("an earlier line", lines[0]);
            Assert.Equal(4, lines.Length);
            for (var i = 0; i < 3; i++)
            {
                using var json = JsonDocument.Parse(lines[i + 1]);
                Assert.Equal($"id-{i}", json.RootElement.GetProperty("request_id").GetString());
                Assert.Equal($"/item/{i}", json.RootElement.GetProperty("path").GetString());
            }
            Assert.Equal(0, log.Dropped);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Disabled_WritesNothing()
    {
        var log = AccessLog.Create(new AccessLogConfig(false, "/nonexistent/dir/access.log", AccessLogConfig.JsonFormat));
        Assert.False(log.Enabled);
        log.Write(new DefaultHttpContext(), new RequestRecord("x"));
        await log.DisposeAsync();
    }
}
