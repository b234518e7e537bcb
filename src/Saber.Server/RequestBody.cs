using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace Saber.Server;

/// <summary>
/// A generation request's body, read whole before the request takes a concurrency slot: JSON only (415 otherwise), at
/// most <see cref="SaberServerOptions.MaxRequestBodyBytes"/> (413), within <see cref="SaberServerOptions.RequestBodyTimeoutSeconds"/>
/// and at <see cref="SaberServerOptions.MinRequestBodyBytesPerSecond"/> or faster (408). A body that breaks HTTP (cut
/// short, a malformed chunk) is the client's 400, never a server error.
/// </summary>
internal static class RequestBody
{
    /// <summary>The Content-Type a JSON endpoint accepts: <c>application/json</c>, with no charset or UTF-8's.</summary>
    public static void RequireJson(HttpRequest request)
    {
        string? header = request.ContentType;
        if (header is not null && MediaTypeHeaderValue.TryParse(header, out MediaTypeHeaderValue? type)
            && type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            && (!type.Charset.HasValue || type.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase) || type.Charset.Equals("utf8", StringComparison.OrdinalIgnoreCase)))
            return;
        // No Content-Type is refused too: a browser page elsewhere can post one without a CORS preflight, JSON it cannot.
        throw new OpenAIErrorException(StatusCodes.Status415UnsupportedMediaType,
            $"The request body must be JSON sent as Content-Type application/json (UTF-8); got {(header is null ? "no Content-Type" : $"'{header}'")}.",
            code: "unsupported_media_type");
    }

    /// <summary>Reads the whole body within the deadline; the bytes are the caller's to parse.</summary>
    public static async Task<ReadOnlyMemory<byte>> ReadAsync(HttpRequest request, SaberServerOptions limits)
    {
        RequireJson(request);
        if (request.ContentLength > limits.MaxRequestBodyBytes)
            throw TooLarge(limits);
        CancellationToken aborted = request.HttpContext.RequestAborted;   // a client that left is the handler guard's to ignore
        PipeReader reader = request.BodyReader;
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(limits.RequestBodyTimeoutSeconds));
        // The deadline cancels the pending read, not the read's token: a cancelled token leaves Kestrel's body reader in
        // a state it cannot drain after the answer (an Error in its log), a cancelled pending read does not.
        using CancellationTokenRegistration expiry = deadline.Token.Register(reader.CancelPendingRead);
        var buffer = new MemoryStream();
        try
        {
            while (true)
            {
                ReadResult result = await reader.ReadAsync(CancellationToken.None);
                bool fits = buffer.Length + result.Buffer.Length <= limits.MaxRequestBodyBytes;
                if (fits)
                    foreach (ReadOnlyMemory<byte> segment in result.Buffer) buffer.Write(segment.Span);
                // Every read is advanced past, whatever follows, so that Kestrel can drain the rest after the answer.
                reader.AdvanceTo(result.Buffer.End);
                if (!fits) throw TooLarge(limits);
                if (result.IsCanceled)
                    throw new OpenAIErrorException(StatusCodes.Status408RequestTimeout,
                        $"The request body did not arrive within {limits.RequestBodyTimeoutSeconds} s ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.RequestBodyTimeoutSeconds)}).",
                        code: "request_timeout");
                if (result.IsCompleted) break;
            }
        }
        catch (BadHttpRequestException e) when (!aborted.IsCancellationRequested)
        {
            throw e.StatusCode switch
            {
                StatusCodes.Status413PayloadTooLarge => TooLarge(limits),
                StatusCodes.Status408RequestTimeout => new OpenAIErrorException(StatusCodes.Status408RequestTimeout,
                    $"The request body arrived slower than {limits.MinRequestBodyBytesPerSecond} bytes/s ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MinRequestBodyBytesPerSecond)}).",
                    code: "request_timeout"),
                // Kestrel's own words for what broke HTTP: "Unexpected end of request content.", "Bad chunk size data.", ...
                _ => new OpenAIErrorException(e.StatusCode, $"The request body is malformed: {e.Message}", code: "invalid_body"),
            };
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    private static OpenAIErrorException TooLarge(SaberServerOptions limits) =>
        new(StatusCodes.Status413PayloadTooLarge,
            $"The request body is larger than the server's limit of {limits.MaxRequestBodyBytes} bytes ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MaxRequestBodyBytes)}).",
            code: "request_too_large");
}
