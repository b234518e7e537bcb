using Saber.Load;

namespace Saber.Server.Tests;

/// <summary>
/// A small load test on a real loopback socket (Kestrel, a free port): 16 concurrent streaming clients x 3 requests. Every
/// request completes with exactly the answer of the same request sent alone, or (over the limit) is a clean 429; none is
/// lost. No timing assertions (the timed version: <c>dotnet run -c Release --project src/Saber.Benchmarks -- serve-load</c>).
/// </summary>
public class LoadTests
{
    private const int Clients = 16, PerClient = 3;

    [TestCase(64, TestName = "AboveTheLimitEveryRequestCompletesAsAlone")]
    [TestCase(6, TestName = "BelowTheLimitTheRestAreCleanlyRejected")]
    public async Task ConcurrentStreamsEqualTheRequestsAlone(int maxConcurrentRequests)
    {
        List<LoadRequest> requests = ServeLoad.Requests(Clients * PerClient, maxTokens: 24);
        var (app, address) = await ServeLoad.StartServerAsync(new Dictionary<string, string?>
        {
            ["Server:Models:tiny"] = TestSaberServer.TinyDirectory,
            ["Server:IntraOpThreads"] = "1",
            ["Server:MaxConcurrentRequests"] = maxConcurrentRequests.ToString(),
        });
        await using (app)
        {
            using HttpClient http = ServeLoad.Client(address);
            var alone = new Dictionary<int, LoadAnswer>();
            foreach (LoadRequest r in requests) alone[r.Index] = await ServeLoad.AloneAsync(http, r);

            LoadResult[] results = await ServeLoad.RunAsync(http, requests, Clients, TimeSpan.FromSeconds(60), backoff: TimeSpan.Zero);
            ServeLoad.Verify(results, alone);

            Assert.That(results, Has.All.Not.Null, "every request has an outcome");
            string problems = string.Join("\n", results.Where(r => r.Outcome is LoadOutcome.Failed or LoadOutcome.Lost)
                .Select(r => $"request {r.Request.Index} {r.Outcome}: {r.Error}"));
            Assert.That(ServeLoad.Count(results, LoadOutcome.Failed), Is.Zero, problems);
            Assert.That(ServeLoad.Count(results, LoadOutcome.Lost), Is.Zero, problems);
            int completed = ServeLoad.Count(results, LoadOutcome.Completed), rejected = ServeLoad.Count(results, LoadOutcome.Rejected);
            TestContext.Out.WriteLine($"limit {maxConcurrentRequests}: {completed} completed as alone, {rejected} rejected (429) of {results.Length}");
            Assert.That(completed + rejected, Is.EqualTo(results.Length));
            Assert.That(results.Where(r => r.Outcome == LoadOutcome.Rejected).Select(r => r.Status), Has.All.EqualTo(429), "the limit refuses, not the engine");
            if (maxConcurrentRequests >= Clients)
                Assert.That(rejected, Is.Zero);
            else
                Assert.That(completed, Is.GreaterThanOrEqualTo(maxConcurrentRequests), "at least the first wave completes");
            var limiter = (ConcurrentRequestLimiter)app.Services.GetService(typeof(ConcurrentRequestLimiter))!;
            await ConcurrencyLimitTests.Until(() => limiter.InFlight == 0, "every slot is back");
        }
    }
}
