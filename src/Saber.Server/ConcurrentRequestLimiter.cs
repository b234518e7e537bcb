using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Saber.Server;

/// <summary>
/// The server-wide limit on generation requests in flight (<c>/v1/chat/completions</c>, <c>/v1/completions</c>,
/// <c>/v1/canvas</c>): <see cref="SaberServerOptions.MaxConcurrentRequests"/>. A request over it is answered 429
/// (<c>too_many_concurrent_requests</c>, <c>Retry-After</c>) once its body is read and parsed (a body still arriving,
/// however slowly, holds no slot); health, readiness and model
/// listings are not limited. Distinct from each engine's <c>Saber:Capacity</c> (503 <c>engine_full</c>), which bounds
/// the requests one model's engine holds.
/// </summary>
/// <remarks>
/// A counter rather than ASP.NET Core's rate-limiting middleware: the slot is taken and given back around the handler
/// itself (<see cref="RunAsync"/>), inside the handler's error guard, so the rejection is an ordinary
/// <see cref="OpenAIErrorException"/> in OpenAI's shape, a stream holds its slot until the handler returns (its
/// <c>[DONE]</c> is flushed, or the client's disconnect ends the decode), and a <c>finally</c> gives the slot back on
/// every exit path. No queue: a request either gets a slot at once or is rejected, so no work waits behind the limit.
/// </remarks>
public sealed class ConcurrentRequestLimiter
{
    private int inFlight;

    public ConcurrentRequestLimiter(IOptions<SaberServerOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Limit = options.Value.MaxConcurrentRequests;
    }

    /// <summary>The most generation requests in flight at once (<c>Server:MaxConcurrentRequests</c>).</summary>
    public int Limit { get; }

    /// <summary>Generation requests holding a slot now.</summary>
    public int InFlight => Volatile.Read(ref inFlight);

    /// <summary>Generation requests answered 429 since the start.</summary>
    public long Rejected => Interlocked.Read(ref rejected);

    private long rejected;

    /// <summary>Takes a slot, or throws the 429 when every slot is taken.</summary>
    internal void Enter()
    {
        while (true)
        {
            int now = Volatile.Read(ref inFlight);
            if (now >= Limit)
            {
                Interlocked.Increment(ref rejected);
                throw new OpenAIErrorException(StatusCodes.Status429TooManyRequests,
                    $"This server already handles {Limit} generation requests, its limit ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MaxConcurrentRequests)} = {Limit}); retry later.",
                    "rate_limit_exceeded", code: "too_many_concurrent_requests");
            }
            if (Interlocked.CompareExchange(ref inFlight, now + 1, now) == now) return;
        }
    }

    /// <summary>Gives a slot back.</summary>
    internal void Exit() => Interlocked.Decrement(ref inFlight);

    /// <summary>Runs <paramref name="handler"/> holding a slot for as long as it runs (a stream: until it ends or its client leaves).</summary>
    internal async Task RunAsync(Func<Task> handler)
    {
        Enter();
        try
        {
            await handler();
        }
        finally
        {
            Exit();
        }
    }
}
