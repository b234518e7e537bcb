using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Saber.Server;

/// <summary>
/// DNS rebinding protection of a server without API keys: such a server listens on loopback only
/// (<see cref="ListenAddressCheck"/>), and answers only requests whose <c>Host</c> is a loopback name (<c>localhost</c>,
/// 127.0.0.0/8, <c>[::1]</c>, any port). A page on attacker.example whose name is rebound to 127.0.0.1 reaches the
/// socket, but its requests carry <c>Host: attacker.example</c>: they are answered 421 <c>host_not_allowed</c>.
/// With keys the check is off (a page cannot send the key), and so with <see cref="SaberServerOptions.AllowUnauthenticatedRemote"/>
/// (remote clients use the server's own name).
/// </summary>
internal sealed class HostFilter(IOptions<SaberServerOptions> options, ApiKeyAuthentication keys)
{
    private readonly bool enabled = !keys.Enabled && !options.Value.AllowUnauthenticatedRemote;

    /// <summary>Whether <paramref name="host"/> (a Host header: a name or address, maybe with a port) names this machine's loopback.</summary>
    public static bool IsLoopback(HostString host)
    {
        if (!host.HasValue) return false;
        string name = host.Host;   // without the port; an IPv6 address keeps its brackets
        if (name.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        if (name.StartsWith('[') && name.EndsWith(']')) name = name[1..^1];
        return IPAddress.TryParse(name, out IPAddress? address) && IPAddress.IsLoopback(address)
            // TryParse takes "127.1" and "2130706433" too; only dotted quads and IPv6 are names a client sends.
            && (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 || name.Count(c => c == '.') == 3);
    }

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (!enabled || IsLoopback(context.Request.Host))
        {
            await next(context);
            return;
        }
        string host = context.Request.Host.HasValue ? $"'{context.Request.Host.Value}'" : "no Host";
        await new OpenAIErrorException(StatusCodes.Status421MisdirectedRequest,
            $"This server answers only loopback Host names (localhost, 127.x.x.x, [::1]); the request names {host}. Without API keys it serves " +
            $"this machine only (DNS rebinding protection): set {SaberServerOptions.SectionName}:{nameof(SaberServerOptions.ApiKeys)} to serve other names.",
            code: "host_not_allowed").WriteAsync(context.Response);
    }
}
