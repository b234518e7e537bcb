using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Saber.Extensions.AI;

namespace Saber.Server;

/// <summary>A parsed <c>/v1/chat/completions</c> or <c>/v1/completions</c> body.</summary>
internal sealed partial class CompletionRequest
{
    /// <summary>The sampler fields read from the body into <see cref="ChatOptions.AdditionalProperties"/> (<see cref="SaberChatOptionKeys"/>).</summary>
    public static readonly string[] SamplerFields =
    [
        SaberChatOptionKeys.Strategy, SaberChatOptionKeys.BlockLength, SaberChatOptionKeys.MinTokensPerStep, SaberChatOptionKeys.RemaskDivisor,
        SaberChatOptionKeys.Threshold, SaberChatOptionKeys.Variant, SaberChatOptionKeys.Steps, SaberChatOptionKeys.Metric,
        SaberChatOptionKeys.Backtracking, SaberChatOptionKeys.FixedThreshold, SaberChatOptionKeys.Factor, SaberChatOptionKeys.Cache,
    ];

    public required string Model { get; init; }
    public required List<ChatMessage> Messages { get; init; }
    public required ChatOptions Options { get; init; }
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }

    /// <summary>Reads the body (at most <see cref="SaberServerOptions.MaxRequestBodyBytes"/>) and parses it; chat bodies carry messages, completion bodies a prompt.</summary>
    public static async Task<CompletionRequest> ReadAsync(HttpRequest request, bool chat, SaberServerOptions limits)
    {
        if (request.ContentLength > limits.MaxRequestBodyBytes)
            throw TooLarge(limits);
        var buffer = new MemoryStream();
        byte[] chunk = new byte[16384];
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(chunk, request.HttpContext.RequestAborted)) > 0)
            {
                if (buffer.Length + read > limits.MaxRequestBodyBytes) throw TooLarge(limits);
                buffer.Write(chunk, 0, read);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(limits);
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(buffer.GetBuffer().AsMemory(0, (int)buffer.Length));
        }
        catch (JsonException e)
        {
            throw OpenAIErrorException.BadRequest($"The request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        using (document)
            return Parse(document.RootElement, chat, limits);
    }

    private static OpenAIErrorException TooLarge(SaberServerOptions limits) =>
        new(StatusCodes.Status413PayloadTooLarge,
            $"The request body is larger than the server's limit of {limits.MaxRequestBodyBytes} bytes ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MaxRequestBodyBytes)}).",
            code: "request_too_large");

    private static CompletionRequest Parse(JsonElement root, bool chat, SaberServerOptions limits)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw OpenAIErrorException.BadRequest("The request body must be a JSON object.");
        string model = String(root, "model") ?? throw OpenAIErrorException.BadRequest("The field 'model' is required.", "model");

        List<ChatMessage> messages = chat ? ReadMessages(root) : [new ChatMessage(ChatRole.User, Prompt(root))];

        int? maxTokens = Int(root, "max_tokens") ?? (chat ? Int(root, "max_completion_tokens") : null);
        if (maxTokens is < 1)
            throw OpenAIErrorException.BadRequest($"'max_tokens' must be >= 1; got {maxTokens}.", "max_tokens");
        if (maxTokens > limits.MaxTokens)
            throw OpenAIErrorException.BadRequest(
                $"'max_tokens' is {maxTokens}, above this server's limit of {limits.MaxTokens} ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MaxTokens)}).",
                "max_tokens", "max_tokens_too_large");

        var options = new ChatOptions { MaxOutputTokens = maxTokens ?? Math.Min(limits.DefaultMaxTokens, limits.MaxTokens), AdditionalProperties = [] };
        if (Number(root, "temperature") is double t)
        {
            if (!double.IsFinite(t) || t < 0)
                throw OpenAIErrorException.BadRequest($"'temperature' must be a finite number >= 0; got {t}.", "temperature");
            options.Temperature = (float)t;
        }
        if (Present(root, "seed") is JsonElement seed)
        {
            if (seed.ValueKind != JsonValueKind.Number || !seed.TryGetInt64(out long s))
                throw OpenAIErrorException.BadRequest($"'seed' must be an integer within 64 bits; got {seed.GetRawText()}.", "seed");
            options.Seed = s;
        }
        foreach (string field in SamplerFields)
            if (Present(root, field) is JsonElement value)
                options.AdditionalProperties[field] = value.Clone();

        bool stream = Bool(root, "stream") ?? false;
        bool includeUsage = false;
        if (Present(root, "stream_options") is JsonElement so)
        {
            if (so.ValueKind != JsonValueKind.Object)
                throw OpenAIErrorException.BadRequest("'stream_options' must be an object.", "stream_options");
            includeUsage = Bool(so, "include_usage") ?? false;
        }
        return new CompletionRequest { Model = model, Messages = messages, Options = options, Stream = stream, IncludeUsage = includeUsage };
    }

    private static List<ChatMessage> ReadMessages(JsonElement root)
    {
        if (Present(root, "messages") is not JsonElement array)
            throw OpenAIErrorException.BadRequest("The field 'messages' is required.", "messages");
        if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() == 0)
            throw OpenAIErrorException.BadRequest("'messages' must be a non-empty array.", "messages");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (JsonElement m in array.EnumerateArray())
        {
            string param = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object)
                throw OpenAIErrorException.BadRequest($"'{param}' must be an object.", param);
            string role = String(m, "role", param + ".role") ?? throw OpenAIErrorException.BadRequest($"'{param}.role' is required.", param + ".role");
            if (role is not ("system" or "developer" or "user" or "assistant"))
                throw OpenAIErrorException.BadRequest($"'{param}.role' must be \"system\", \"developer\", \"user\" or \"assistant\"; got \"{role}\".", param + ".role");
            string content = Content(m, param + ".content");
            list.Add(new ChatMessage(role == "developer" ? ChatRole.System : new ChatRole(role), content));
            i++;
        }
        return list;
    }

    private static string Content(JsonElement message, string param)
    {
        if (!message.TryGetProperty("content", out JsonElement content) || content.ValueKind == JsonValueKind.Null)
            return "";
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array)
            throw OpenAIErrorException.BadRequest($"'{param}' must be a string or an array of text parts.", param);
        var text = new System.Text.StringBuilder();
        foreach (JsonElement part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String
                || type.GetString() != "text" || !part.TryGetProperty("text", out JsonElement t) || t.ValueKind != JsonValueKind.String)
                throw OpenAIErrorException.BadRequest($"'{param}' parts must be {{\"type\": \"text\", \"text\": \"...\"}}; the models served here read text only.", param);
            text.Append(t.GetString());
        }
        return text.ToString();
    }

    private static string Prompt(JsonElement root)
    {
        if (Present(root, "prompt") is not JsonElement prompt)
            throw OpenAIErrorException.BadRequest("The field 'prompt' is required.", "prompt");
        if (prompt.ValueKind == JsonValueKind.String) return prompt.GetString()!;
        if (prompt.ValueKind == JsonValueKind.Array && prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String)
            return prompt[0].GetString()!;
        throw OpenAIErrorException.BadRequest("'prompt' must be a string (or an array of exactly one string).", "prompt");
    }

    private static JsonElement? Present(JsonElement o, string name) =>
        o.TryGetProperty(name, out JsonElement e) && e.ValueKind != JsonValueKind.Null ? e : null;

    private static string? String(JsonElement o, string name, string? param = null) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } e => e.GetString(),
        _ => throw OpenAIErrorException.BadRequest($"'{param ?? name}' must be a string.", param ?? name),
    };

    private static int? Int(JsonElement o, string name) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } e when e.TryGetInt32(out int i) => i,
        { } e => throw OpenAIErrorException.BadRequest($"'{name}' must be an integer; got {e.GetRawText()}.", name),
    };

    private static double? Number(JsonElement o, string name) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } e => e.GetDouble(),
        { } e => throw OpenAIErrorException.BadRequest($"'{name}' must be a number; got {e.GetRawText()}.", name),
    };

    private static bool? Bool(JsonElement o, string name) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        { } e => throw OpenAIErrorException.BadRequest($"'{name}' must be true or false; got {e.GetRawText()}.", name),
    };

    /// <summary>
    /// An <see cref="ArgumentException"/> of the option mapping as a 400: its text speaks of the body's fields
    /// (<c>AdditionalProperties["strategy"]</c> becomes <c>'strategy'</c>), and the field it names is the error's param.
    /// </summary>
    public static OpenAIErrorException Invalid(ArgumentException e)
    {
        string message = e.Message;
        int cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        int actual = message.IndexOf("\nActual value was", StringComparison.Ordinal);
        if (actual >= 0) message = message[..actual];
        string? param = null;
        Match m = AdditionalProperty().Match(message);
        if (m.Success) param = m.Groups[1].Value;
        message = AdditionalProperty().Replace(message, "'$1'");
        if (message.Contains("ChatOptions.MaxOutputTokens", StringComparison.Ordinal)) param ??= "max_tokens";
        if (message.Contains("ChatOptions.Temperature", StringComparison.Ordinal)) param ??= "temperature";
        message = message.Replace("ChatOptions.MaxOutputTokens", "'max_tokens'", StringComparison.Ordinal)
            .Replace("MaxOutputTokens", "'max_tokens'", StringComparison.Ordinal)
            .Replace("ChatOptions.Temperature", "'temperature'", StringComparison.Ordinal);
        return OpenAIErrorException.BadRequest(message.Trim(), param);
    }

    // A cache object's fields are named "cache.policy", "cache.refresh_every", "cache.on_remask".
    [GeneratedRegex("AdditionalProperties\\[\"([a-z_.]+)\"\\]")]
    private static partial Regex AdditionalProperty();
}
