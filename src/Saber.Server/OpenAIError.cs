using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Saber.Server;

/// <summary>A request the server answers with an OpenAI-shaped error: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class OpenAIErrorException(int status, string message, string type = OpenAIErrorException.InvalidRequest, string? param = null, string? code = null)
    : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";
    public const string ServerError = "server_error";

    /// <summary>How every body is written: JSON (never HTML), so quotes and apostrophes stay readable rather than \u-escaped.</summary>
    internal static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    /// <summary>Response headers the error needs (<c>WWW-Authenticate</c> of a 401, <c>Allow</c> of a 405), set when it is written.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];

    internal static OpenAIErrorException BadRequest(string message, string? param = null, string? code = null) => new(StatusCodes.Status400BadRequest, message, InvalidRequest, param, code);

    internal void WriteBody(Utf8JsonWriter json)
    {
        json.WriteStartObject();
        json.WriteStartObject("error");
        json.WriteString("message", Message);
        json.WriteString("type", Type);
        if (Param is null) json.WriteNull("param"); else json.WriteString("param", Param);
        if (Code is null) json.WriteNull("code"); else json.WriteString("code", Code);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    internal async Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        response.ContentType = "application/json";
        if (Status is StatusCodes.Status503ServiceUnavailable or StatusCodes.Status429TooManyRequests)
            response.Headers.RetryAfter = "1";
        // A 408 leaves the rest of the body unread: the connection cannot carry another request.
        if (Status == StatusCodes.Status408RequestTimeout)
            response.Headers.Connection = "close";
        foreach (var (name, value) in Headers) response.Headers[name] = value;
        try
        {
            await using var json = new Utf8JsonWriter(response.Body, WriterOptions);
            WriteBody(json);
            await json.FlushAsync(response.HttpContext.RequestAborted);
        }
        catch (Exception) when (response.HttpContext.RequestAborted.IsCancellationRequested)
        {
            // The client left (a body cut short by a closed connection): nobody to answer, and no error of the server's.
        }
    }
}
