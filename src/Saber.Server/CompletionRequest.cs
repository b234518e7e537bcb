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

    /// <summary>
    /// The body's name of a sampler key: the key itself, but Saber's <c>n</c> (the fewest tokens a step commits) is
    /// <c>min_tokens_per_step</c>, since OpenAI's <c>n</c> counts choices.
    /// </summary>
    public static string BodyField(string key) => key == SaberChatOptionKeys.MinTokensPerStep ? "min_tokens_per_step" : key;

    public required string Model { get; init; }
    public required List<ChatMessage> Messages { get; init; }
    public required ChatOptions Options { get; init; }
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }

    /// <summary>
    /// Reads the body (<see cref="RequestBody"/>: JSON, within the size and time limits) and parses it; chat bodies carry
    /// messages, completion bodies a prompt. Every string in it must be text (<see cref="RequireText"/>).
    /// </summary>
    public static async Task<CompletionRequest> ReadAsync(HttpRequest request, bool chat, SaberServerOptions limits)
    {
        ReadOnlyMemory<byte> body = await RequestBody.ReadAsync(request, limits);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException e)
        {
            throw OpenAIErrorException.BadRequest($"The request body is not valid JSON: {e.Message}", code: InvalidJson);
        }
        using (document)
        {
            RequireText(document.RootElement, path: null);
            return Parse(document.RootElement, chat, limits);
        }
    }

    // The 400s' codes, as OpenAI names them.
    private const string InvalidJson = "invalid_json";
    private const string MissingParameter = "missing_required_parameter";
    private const string InvalidType = "invalid_type";
    private const string InvalidValue = "invalid_value";
    private const string UnsupportedParameter = "unsupported_parameter";

    /// <summary>
    /// Checks every string and property name of the document once: JSON may carry bytes that are not UTF-8, or a
    /// <c>\ud800</c> escape with no partner, which no field can be read from. A 400 <c>invalid_json</c> naming the field,
    /// before any field is read (and before the sampler fields travel on as <see cref="JsonElement"/>s).
    /// </summary>
    private static void RequireText(JsonElement element, string? path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                try
                {
                    element.GetString();
                }
                catch (InvalidOperationException)
                {
                    throw NotText(path, $"The string '{path}'");
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (JsonElement item in element.EnumerateArray())
                    RequireText(item, $"{path}[{i++}]");
                break;
            case JsonValueKind.Object:
                foreach (JsonProperty property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        throw NotText(path, path is null ? "A property name at the top level" : $"A property name in '{path}'");
                    }
                    RequireText(property.Value, path is null ? name : $"{path}.{name}");
                }
                break;
        }
    }

    private static OpenAIErrorException NotText(string? param, string what) =>
        OpenAIErrorException.BadRequest($"{what} of the request body is not text: it holds bytes that are not UTF-8, or an unpaired surrogate escape such as \\ud800.",
            param, InvalidJson);

    private static CompletionRequest Parse(JsonElement root, bool chat, SaberServerOptions limits)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw OpenAIErrorException.BadRequest("The request body must be a JSON object.", code: InvalidType);
        string model = String(root, "model") ?? throw OpenAIErrorException.BadRequest("The field 'model' is required.", "model", MissingParameter);

        List<ChatMessage> messages = chat ? ReadMessages(root) : [new ChatMessage(ChatRole.User, Prompt(root))];
        RefuseUnsupported(root, chat);

        int? maxTokens = Int(root, "max_tokens") ?? (chat ? Int(root, "max_completion_tokens") : null);
        if (maxTokens is < 1)
            throw OpenAIErrorException.BadRequest($"'max_tokens' must be >= 1; got {maxTokens}.", "max_tokens", InvalidValue);
        if (maxTokens > limits.MaxTokens)
            throw OpenAIErrorException.BadRequest(
                $"'max_tokens' is {maxTokens}, above this server's limit of {limits.MaxTokens} ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MaxTokens)}).",
                "max_tokens", "max_tokens_too_large");

        var options = new ChatOptions { MaxOutputTokens = maxTokens ?? Math.Min(limits.DefaultMaxTokens, limits.MaxTokens), AdditionalProperties = [] };
        if (Number(root, "temperature") is double t)
        {
            if (!double.IsFinite(t) || t < 0)
                throw OpenAIErrorException.BadRequest($"'temperature' must be a finite number >= 0; got {t}.", "temperature", InvalidValue);
            options.Temperature = (float)t;
        }
        if (Present(root, "seed") is JsonElement seed)
        {
            if (seed.ValueKind != JsonValueKind.Number || !seed.TryGetInt64(out long s))
                throw OpenAIErrorException.BadRequest($"'seed' must be an integer within 64 bits; got {seed.GetRawText()}.", "seed", InvalidType);
            options.Seed = s;
        }
        foreach (string key in SamplerFields)
            if (Present(root, BodyField(key)) is JsonElement value)
                options.AdditionalProperties[key] = value.Clone();

        bool stream = Bool(root, "stream") ?? false;
        bool includeUsage = false;
        if (Present(root, "stream_options") is JsonElement so)
        {
            if (so.ValueKind != JsonValueKind.Object)
                throw OpenAIErrorException.BadRequest("'stream_options' must be an object.", "stream_options", InvalidType);
            includeUsage = Bool(so, "include_usage") ?? false;
        }
        return new CompletionRequest { Model = model, Messages = messages, Options = options, Stream = stream, IncludeUsage = includeUsage };
    }

    /// <summary>
    /// OpenAI fields the server cannot honour, refused by name rather than ignored (a client asking for tools, JSON
    /// output, log probabilities or several choices would otherwise get an answer without them); their defaults pass.
    /// </summary>
    private static void RefuseUnsupported(JsonElement root, bool chat)
    {
        static OpenAIErrorException Unsupported(string field, string why) =>
            OpenAIErrorException.BadRequest($"'{field}' is not supported here: {why}.", field, UnsupportedParameter);

        if (Present(root, "n") is JsonElement n && !(n.ValueKind == JsonValueKind.Number && n.TryGetInt32(out int choices) && choices == 1))
            throw Unsupported("n", $"every response has one choice; got {n.GetRawText()} (Saber's minimum tokens per step is 'min_tokens_per_step')");
        if (Present(root, "logprobs") is JsonElement logprobs && logprobs.ValueKind != JsonValueKind.False
            && !(logprobs.ValueKind == JsonValueKind.Number && logprobs.TryGetInt32(out int count) && count == 0))
            throw Unsupported("logprobs", "the server returns no log probabilities");
        if (chat)
        {
            foreach (string field in new[] { "tools", "functions" })
                if (Present(root, field) is JsonElement list && !(list.ValueKind == JsonValueKind.Array && list.GetArrayLength() == 0))
                    throw Unsupported(field, "the models served here do not call tools");
            foreach (string field in new[] { "tool_choice", "function_call" })
                if (Present(root, field) is JsonElement choice && !(choice.ValueKind == JsonValueKind.String && choice.ValueEquals("none")))
                    throw Unsupported(field, "the models served here do not call tools; only \"none\" is accepted");
            if (Present(root, "response_format") is JsonElement format
                && !(format.ValueKind == JsonValueKind.Object && format.TryGetProperty("type", out JsonElement type) && type.ValueEquals("text")))
                throw Unsupported("response_format", "the output is plain text; only {\"type\": \"text\"} is accepted");
            if (Present(root, "top_logprobs") is JsonElement top && !(top.ValueKind == JsonValueKind.Number && top.TryGetInt32(out int k) && k == 0))
                throw Unsupported("top_logprobs", "the server returns no log probabilities");
        }
        else
        {
            if (Present(root, "echo") is JsonElement echo && echo.ValueKind != JsonValueKind.False)
                throw Unsupported("echo", "the prompt is not echoed");
            if (Present(root, "best_of") is JsonElement best && !(best.ValueKind == JsonValueKind.Number && best.TryGetInt32(out int b) && b == 1))
                throw Unsupported("best_of", "one completion is decoded per request");
            if (Present(root, "suffix") is JsonElement suffix && !(suffix.ValueKind == JsonValueKind.String && suffix.GetString()!.Length == 0))
                throw Unsupported("suffix", "there is no insertion after a suffix");
        }
    }

    private static List<ChatMessage> ReadMessages(JsonElement root)
    {
        if (Present(root, "messages") is not JsonElement array)
            throw OpenAIErrorException.BadRequest("The field 'messages' is required.", "messages", MissingParameter);
        if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() == 0)
            throw OpenAIErrorException.BadRequest("'messages' must be a non-empty array.", "messages", array.ValueKind == JsonValueKind.Array ? InvalidValue : InvalidType);
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (JsonElement m in array.EnumerateArray())
        {
            string param = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object)
                throw OpenAIErrorException.BadRequest($"'{param}' must be an object.", param, InvalidType);
            string role = String(m, "role", param + ".role") ?? throw OpenAIErrorException.BadRequest($"'{param}.role' is required.", param + ".role", MissingParameter);
            if (role is not ("system" or "developer" or "user" or "assistant"))
                throw OpenAIErrorException.BadRequest($"'{param}.role' must be \"system\", \"developer\", \"user\" or \"assistant\"; got \"{role}\".", param + ".role", InvalidValue);
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
            throw OpenAIErrorException.BadRequest($"'{param}' must be a string or an array of text parts.", param, InvalidType);
        var text = new System.Text.StringBuilder();
        foreach (JsonElement part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String
                || type.GetString() != "text" || !part.TryGetProperty("text", out JsonElement t) || t.ValueKind != JsonValueKind.String)
                throw OpenAIErrorException.BadRequest($"'{param}' parts must be {{\"type\": \"text\", \"text\": \"...\"}}; the models served here read text only.", param, InvalidValue);
            text.Append(t.GetString());
        }
        return text.ToString();
    }

    private static string Prompt(JsonElement root)
    {
        if (Present(root, "prompt") is not JsonElement prompt)
            throw OpenAIErrorException.BadRequest("The field 'prompt' is required.", "prompt", MissingParameter);
        if (prompt.ValueKind == JsonValueKind.String) return prompt.GetString()!;
        if (prompt.ValueKind == JsonValueKind.Array && prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String)
            return prompt[0].GetString()!;
        throw OpenAIErrorException.BadRequest("'prompt' must be a string (or an array of exactly one string).", "prompt", InvalidType);
    }

    private static JsonElement? Present(JsonElement o, string name) =>
        o.TryGetProperty(name, out JsonElement e) && e.ValueKind != JsonValueKind.Null ? e : null;

    private static string? String(JsonElement o, string name, string? param = null) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } e => e.GetString(),
        _ => throw OpenAIErrorException.BadRequest($"'{param ?? name}' must be a string.", param ?? name, InvalidType),
    };

    private static int? Int(JsonElement o, string name) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } e when e.TryGetInt32(out int i) => i,
        { } e => throw OpenAIErrorException.BadRequest($"'{name}' must be an integer; got {e.GetRawText()}.", name, InvalidType),
    };

    private static double? Number(JsonElement o, string name) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } e => e.GetDouble(),
        { } e => throw OpenAIErrorException.BadRequest($"'{name}' must be a number; got {e.GetRawText()}.", name, InvalidType),
    };

    private static bool? Bool(JsonElement o, string name) => Present(o, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        { } e => throw OpenAIErrorException.BadRequest($"'{name}' must be true or false; got {e.GetRawText()}.", name, InvalidType),
    };

    /// <summary>
    /// An <see cref="ArgumentException"/> of the option mapping as a 400: its text speaks of the body's fields
    /// (<c>AdditionalProperties["strategy"]</c> becomes <c>'strategy'</c>), and the field it names is the error's param;
    /// an output that does not fit the model's positions says how much does (<c>context_length_exceeded</c>).
    /// </summary>
    public static OpenAIErrorException Invalid(ArgumentException e)
    {
        if (e is ContextLengthExceededException context)
            return context.LargestFit == 0 && context.ParamName == "messages"
                ? OpenAIErrorException.BadRequest(
                    $"The prompt is {context.PromptTokens} tokens, leaving no room in the model's {context.MaxSequenceLength} positions for any output.",
                    code: ContextLengthExceeded)
                : OpenAIErrorException.BadRequest(
                    $"max_tokens {context.MaxOutputTokens} with a {context.PromptTokens}-token prompt exceeds the model's {context.MaxSequenceLength} positions; " +
                    (context.LargestFit > 0
                        ? $"at most {context.LargestFit} fit (block length {context.BlockLength})."
                        : $"none fit with block length {context.BlockLength}; lower 'block_length'."),
                    "max_tokens", ContextLengthExceeded);
        string message = e.Message;
        int cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        int actual = message.IndexOf("\nActual value was", StringComparison.Ordinal);
        if (actual >= 0) message = message[..actual];
        string? param = null;
        Match m = AdditionalProperty().Match(message);
        if (m.Success) param = BodyField(m.Groups[1].Value);
        message = AdditionalProperty().Replace(message, match => $"'{BodyField(match.Groups[1].Value)}'");
        if (message.Contains("ChatOptions.MaxOutputTokens", StringComparison.Ordinal)) param ??= "max_tokens";
        if (message.Contains("ChatOptions.Temperature", StringComparison.Ordinal)) param ??= "temperature";
        message = message.Replace("ChatOptions.MaxOutputTokens", "'max_tokens'", StringComparison.Ordinal)
            .Replace("MaxOutputTokens", "'max_tokens'", StringComparison.Ordinal)
            .Replace("ChatOptions.Temperature", "'temperature'", StringComparison.Ordinal);
        return OpenAIErrorException.BadRequest(message.Trim(), param, InvalidValue);
    }

    private const string ContextLengthExceeded = "context_length_exceeded";

    // A cache object's fields are named "cache.policy", "cache.refresh_every", "cache.on_remask".
    [GeneratedRegex("AdditionalProperties\\[\"([a-z_.]+)\"\\]")]
    private static partial Regex AdditionalProperty();
}
