using Microsoft.Extensions.AI;
using Saber.Text;

namespace Saber.Extensions.AI;

/// <summary>
/// An <see cref="IChatPromptTemplate"/> that renders a model's own Hugging Face <c>chat_template</c> (see <see cref="ChatTemplate"/>).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><see cref="ChatOptions.Instructions"/>, when set and not empty, comes first as a <c>system</c> turn.</item>
/// <item>Each message is <c>{role: ChatRole.Value, content: ChatMessage.Text}</c> (text contents only).</item>
/// <item>The prompt ends with the template's generation prompt, unless the last message is an <c>assistant</c> turn: then
/// it ends right after that turn's text (rendered without the generation prompt and cut after the text, as transformers'
/// <c>continue_final_message</c> does), so the model continues it. An empty assistant turn is the same as none.</item>
/// </list>
/// </remarks>
public sealed class JinjaChatPromptTemplate : IChatPromptTemplate
{
    private readonly ChatTemplate template;
    private readonly Dictionary<string, object?> variables;

    /// <param name="template">The parsed <c>chat_template</c>.</param>
    /// <param name="bosToken">The text of <c>bos_token</c> (tokenizer_config.json's), or null when the model has none.</param>
    /// <param name="eosToken">The text of <c>eos_token</c>, or null.</param>
    /// <param name="extraVariables">More variables the template reads, if any.</param>
    public JinjaChatPromptTemplate(ChatTemplate template, string? bosToken, string? eosToken, IReadOnlyDictionary<string, object?>? extraVariables = null)
    {
        this.template = template ?? throw new ArgumentNullException(nameof(template));
        variables = extraVariables?.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal) ?? new(StringComparer.Ordinal);
        // An unset token stays undefined for the template (as in transformers), rather than the empty string.
        if (bosToken is not null) variables["bos_token"] = bosToken;
        if (eosToken is not null) variables["eos_token"] = eosToken;
    }

    /// <summary>Parses <paramref name="templateSource"/> (see <see cref="ChatTemplate.Parse"/>).</summary>
    /// <exception cref="ChatTemplateException">The template uses something outside the supported subset.</exception>
    public JinjaChatPromptTemplate(string templateSource, string? bosToken, string? eosToken)
        : this(ChatTemplate.Parse(templateSource), bosToken, eosToken)
    {
    }

    /// <inheritdoc />
    /// <exception cref="ChatTemplateException">The template fails or raises an exception for these messages.</exception>
    /// <exception cref="InvalidOperationException">The last message is an assistant turn that the rendered prompt does not contain, so it cannot be continued.</exception>
    public string Format(IReadOnlyList<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = new List<ChatTurn>(messages.Count + 1);
        if (!string.IsNullOrEmpty(options?.Instructions)) turns.Add(new ChatTurn(ChatRole.System.Value, options.Instructions));
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i] ?? throw new ArgumentException($"Message {i} is null.", nameof(messages));
            turns.Add(new ChatTurn(message.Role.Value, message.Text));
        }

        bool continueLast = turns.Count > 0 && turns[^1].Role == ChatRole.Assistant.Value;
        if (continueLast && turns[^1].Content.Length == 0)
        {
            turns.RemoveAt(turns.Count - 1);
            continueLast = false;
        }
        string prompt = template.Render(turns, addGenerationPrompt: !continueLast, variables);
        if (!continueLast) return prompt;

        // transformers' continue_final_message: cut after the last occurrence of the final text (or, if the template
        // trimmed it, of the trimmed text), dropping the end-of-turn and anything the template adds after it.
        string final = turns[^1].Content;
        int at = prompt.LastIndexOf(final, StringComparison.Ordinal);
        if (at < 0)
        {
            final = final.Trim();
            at = final.Length == 0 ? -1 : prompt.LastIndexOf(final, StringComparison.Ordinal);
        }
        if (at < 0)
            throw new InvalidOperationException("The chat template does not write the final assistant message's text, so the model cannot continue it.");
        return prompt[..(at + final.Length)];
    }
}
