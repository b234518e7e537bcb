using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

namespace Saber.Server;

/// <summary>
/// The server's API keys (<see cref="SaberServerOptions.ApiKeys"/> and the lines of <see cref="SaberServerOptions.ApiKeysFile"/>,
/// read once at the start) and their check: a request must send <c>Authorization: Bearer KEY</c>, as OpenAI clients do,
/// or it is answered 401 <c>invalid_api_key</c> with <c>WWW-Authenticate: Bearer</c>. The health probes
/// (<c>/healthz</c>, <c>/readyz</c>) and the static canvas page (<c>/</c>, which holds no data) need no key; everything
/// else does, <c>/metrics</c> and unknown paths included. No keys configured: every request passes.
/// </summary>
/// <remarks>
/// Keys are kept only as SHA-256 fingerprints, and a presented key is fingerprinted and compared with every one of them
/// by <see cref="CryptographicOperations.FixedTimeEquals"/>, without stopping at a match: 32 bytes against 32 bytes
/// whatever the lengths, so the time a refusal takes tells neither a key's length nor how much of it a guess got right.
/// </remarks>
public sealed class ApiKeyAuthentication
{
    private readonly byte[][] fingerprints;

    public ApiKeyAuthentication(IOptions<SaberServerOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        SaberServerOptions settings = options.Value;
        var keys = new List<string>();
        foreach (string key in settings.ApiKeys)
        {
            if (string.IsNullOrWhiteSpace(key))
                throw new ArgumentException($"{SaberServerOptions.SectionName}:{nameof(SaberServerOptions.ApiKeys)} holds an empty key.", nameof(options));
            keys.Add(key.Trim());
        }
        if (!string.IsNullOrEmpty(settings.ApiKeysFile))
            keys.AddRange(ReadKeysFile(settings.ApiKeysFile));
        fingerprints = [.. keys.Distinct(StringComparer.Ordinal).Select(Fingerprint)];
    }

    /// <summary>Whether keys are configured (else no request needs one).</summary>
    public bool Enabled => fingerprints.Length > 0;

    /// <summary>How many distinct keys are configured.</summary>
    public int KeyCount => fingerprints.Length;

    /// <summary>A key's SHA-256: 32 bytes whatever its length, what the keys are kept and compared as.</summary>
    public static byte[] Fingerprint(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key ?? throw new ArgumentNullException(nameof(key))));

    /// <summary>Whether <paramref name="presented"/> is one of the keys: compared with all of them in constant time.</summary>
    public bool IsValid(string? presented)
    {
        if (string.IsNullOrEmpty(presented)) return false;
        byte[] candidate = Fingerprint(presented);
        bool match = false;
        foreach (byte[] fingerprint in fingerprints)
            match |= CryptographicOperations.FixedTimeEquals(candidate, fingerprint);
        return match;
    }

    /// <summary>Paths served without a key: the health probes, and the page (static, no data; its requests need the key).</summary>
    internal static bool IsOpen(PathString path) => path == "/healthz" || path == "/readyz" || path == "/";

    /// <summary>The middleware: a request to a guarded path without a valid Bearer key is answered 401.</summary>
    internal async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (!Enabled || IsOpen(context.Request.Path))
        {
            await next(context);
            return;
        }
        string? header = context.Request.Headers.Authorization;
        string? key = null;
        if (header is not null && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            key = header["Bearer ".Length..].Trim();
        if (IsValid(key))
        {
            await next(context);
            return;
        }
        var error = new OpenAIErrorException(StatusCodes.Status401Unauthorized,
            key is null
                ? "No API key was provided: send it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY)."
                : "Incorrect API key provided.",
            code: "invalid_api_key")
        {
            Headers = [new(HeaderNames.WWWAuthenticate, "Bearer")],
        };
        await error.WriteAsync(context.Response);
    }

    private static IEnumerable<string> ReadKeysFile(string path)
    {
        string setting = $"{SaberServerOptions.SectionName}:{nameof(SaberServerOptions.ApiKeysFile)}";
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{setting} '{path}' cannot be read: {e.Message}", e);
        }
        string[] keys = [.. lines.Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#'))];
        if (keys.Length == 0)
            throw new InvalidOperationException($"{setting} '{path}' holds no key (one a line; blank lines and # comments are skipped).");
        return keys;
    }
}
