using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Saber.Server;

/// <summary>
/// How the server stops with decodes in flight (SIGTERM, Ctrl+C, <c>StopAsync</c>): every generation request's decode
/// is cancelled the moment the host starts stopping, and answered rather than cut off: a non-streamed request with a 503
/// <c>shutting_down</c> and <c>Retry-After</c>, a stream with a last SSE event holding that error (then the stream ends,
/// without <c>[DONE]</c>). Requests that arrive while it stops get the same 503 (<c>/healthz</c>, <c>/readyz</c>, which
/// answers 503 itself, and <c>/metrics</c> excepted). The host waits at most <see cref="Timeout"/> for the answers.
/// </summary>
public static class ServerShutdown
{
    /// <summary>
    /// The host's shutdown timeout (<c>HostOptions.ShutdownTimeout</c>): 2 s. Cancelled decodes leave the engine at their
    /// next step boundary, so with a model whose forward pass takes well under a second every answer is written and the
    /// process exits well within it; connections still open when it runs out are closed.
    /// </summary>
    public static TimeSpan Timeout { get; } = TimeSpan.FromSeconds(2);

    /// <summary>The error every request cancelled or refused by the shutdown is answered with.</summary>
    internal static OpenAIErrorException Error() =>
        new(StatusCodes.Status503ServiceUnavailable, "The server is shutting down; retry later (another instance may answer).",
            OpenAIErrorException.ServerError, code: "shutting_down");

    /// <summary>The host has begun to stop.</summary>
    internal static bool Stopping(HttpContext context) =>
        context.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested;

    /// <summary>
    /// The token a generation request decodes under: cancelled when its client leaves or when the host begins to stop.
    /// Which of the two it was decides whether anyone is answered (see <see cref="Stopping"/>).
    /// </summary>
    internal static CancellationToken DecodeToken(HttpContext context)
    {
        CancellationToken stopping = context.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
        context.Response.RegisterForDispose(linked);
        return linked.Token;
    }

    /// <summary>Sets the host's shutdown timeout to <see cref="Timeout"/>.</summary>
    internal static void Configure(IServiceCollection services) => services.Configure<HostOptions>(o => o.ShutdownTimeout = Timeout);

    /// <summary>Middleware: while the host stops, a new request (health, readiness and metrics excepted) is answered 503 <c>shutting_down</c>.</summary>
    internal static void RefuseWhileStopping(WebApplication app) => app.Use(async (HttpContext context, RequestDelegate next) =>
    {
        if (Stopping(context) && !(context.Request.Path.StartsWithSegments("/healthz") || context.Request.Path.StartsWithSegments("/readyz")
                                   || context.Request.Path.StartsWithSegments(SaberServer.MetricsPath)))
        {
            await Error().WriteAsync(context.Response);
            return;
        }
        await next(context);
    });
}
