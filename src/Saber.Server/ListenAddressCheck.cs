using System.Net;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Saber.Server;

/// <summary>
/// Refuses to start a server without API keys on an address other machines can reach (<c>http://0.0.0.0</c>,
/// <c>http://*</c>, <c>http://+</c>, <c>[::]</c>, a LAN address, a host name other than <c>localhost</c>) unless
/// <see cref="SaberServerOptions.AllowUnauthenticatedRemote"/> says so: one line naming the address and both settings.
/// </summary>
/// <remarks>
/// Checked twice: the configured <c>urls</c> before anything is bound, and the addresses the server really listens on
/// once it has bound them (Kestrel endpoints configured in code or under <c>Kestrel:</c> bypass <c>urls</c>).
/// </remarks>
internal sealed class ListenAddressCheck(IConfiguration configuration, IServer server, IOptions<SaberServerOptions> options, ApiKeyAuthentication keys)
    : IHostedLifecycleService
{
    private bool Required => !keys.Enabled && !options.Value.AllowUnauthenticatedRemote;

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        if (Required)
            Check(configuration[WebHostDefaults.ServerUrlsKey]?.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? []);
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        if (Required)
            Check(server.Features.Get<IServerAddressesFeature>()?.Addresses ?? []);
        return Task.CompletedTask;
    }

    private static void Check(IEnumerable<string> addresses)
    {
        foreach (string address in addresses)
        {
            if (!IsLoopback(address))
                throw new InvalidOperationException(
                    $"Refusing to listen on {address} without API keys: other machines could use this server. Set " +
                    $"{SaberServerOptions.SectionName}:{nameof(SaberServerOptions.ApiKeys)} (or {SaberServerOptions.SectionName}:{nameof(SaberServerOptions.ApiKeysFile)}), " +
                    $"listen on loopback (http://127.0.0.1:PORT), or set {SaberServerOptions.SectionName}:{nameof(SaberServerOptions.AllowUnauthenticatedRemote)}=true to serve it without keys.");
        }
    }

    /// <summary>Whether a listen address (<c>scheme://host:port</c>, as <c>urls</c> or Kestrel writes it) is loopback only.</summary>
    internal static bool IsLoopback(string address)
    {
        int scheme = address.IndexOf("://", StringComparison.Ordinal);
        string rest = scheme >= 0 ? address[(scheme + 3)..] : address;
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0) rest = rest[..slash];
        string host;
        if (rest.StartsWith('['))
        {
            int close = rest.IndexOf(']', StringComparison.Ordinal);
            host = close > 0 ? rest[1..close] : rest;
        }
        else
        {
            int colon = rest.LastIndexOf(':');
            host = colon >= 0 ? rest[..colon] : rest;
        }
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        // "*", "+", "0.0.0.0", "::", a LAN address or any other name binds where others reach it.
        return IPAddress.TryParse(host, out IPAddress? ip) && IPAddress.IsLoopback(ip);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
