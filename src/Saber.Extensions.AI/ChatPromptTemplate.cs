using System.Text;
using Microsoft.Extensions.AI;

namespace Saber.Extensions.AI;

/// <summary>Turns a conversation into the one prompt string a masked diffusion model completes.</summary>
public interface IChatPromptTemplate
{
    /// <summary>
    /// The prompt for <paramref name="messages"/> (and <see cref="ChatOptions.Instructions"/>, if the template uses them).
    /// Must be deterministic: the same messages and options give the same string.
    /// </summary>
    string Format(IReadOnlyList<ChatMessage> messages, ChatOptions? options);
}

/// <summary>The two templates shipped: <see cref="RoleTagged"/> (the default) and <see cref="Raw"/>.</summary>
public static class ChatPromptTemplate
{
    /// <summary>
    /// One line per turn, <c>role: text</c> followed by a newline, then <c>assistant: </c> for the model to complete:
    /// <code>
    /// system: You write Python.
    /// user: Sum a list.
    /// assistant: 
    /// </code>
    /// <list type="bullet">
    /// <item><c>role</c> is <see cref="ChatRole.Value"/> as given (<c>system</c>, <c>user</c>, <c>assistant</c>, <c>tool</c>, or a custom role).</item>
    /// <item><c>text</c> is <see cref="ChatMessage.Text"/> (the message's text contents concatenated; other contents are
    /// left out), written as is, newlines included.</item>
    /// <item><see cref="ChatOptions.Instructions"/>, when set and not empty, comes first as a <c>system</c> turn.</item>
    /// <item>If the last message is an <c>assistant</c> turn, the prompt ends with that turn's text, without newline: the
    /// model continues it (a prefill) instead of starting a new turn.</item>
    /// </list>
    /// </summary>
    public static IChatPromptTemplate RoleTagged { get; } = new RoleTaggedTemplate();

    /// <summary>
    /// The messages' texts (after <see cref="ChatOptions.Instructions"/>) concatenated with nothing between them: a plain
    /// completion, the way <c>saber generate</c> reads its prompt. For models without a chat format, such as <c>models/tiny</c>.
    /// </summary>
    public static IChatPromptTemplate Raw { get; } = new RawTemplate();

    private sealed class RoleTaggedTemplate : IChatPromptTemplate
    {
        public string Format(IReadOnlyList<ChatMessage> messages, ChatOptions? options)
        {
            ArgumentNullException.ThrowIfNull(messages);
            var prompt = new StringBuilder();
            if (!string.IsNullOrEmpty(options?.Instructions))
                prompt.Append(ChatRole.System.Value).Append(": ").Append(options.Instructions).Append('\n');
            for (int i = 0; i < messages.Count; i++)
            {
                ChatMessage message = messages[i] ?? throw new ArgumentException($"Message {i} is null.", nameof(messages));
                prompt.Append(message.Role.Value).Append(": ").Append(message.Text);
                if (i == messages.Count - 1 && message.Role == ChatRole.Assistant)
                    return prompt.ToString();
                prompt.Append('\n');
            }
            return prompt.Append(ChatRole.Assistant.Value).Append(": ").ToString();
        }
    }

    private sealed class RawTemplate : IChatPromptTemplate
    {
        public string Format(IReadOnlyList<ChatMessage> messages, ChatOptions? options)
        {
            ArgumentNullException.ThrowIfNull(messages);
            var prompt = new StringBuilder(options?.Instructions ?? "");
            for (int i = 0; i < messages.Count; i++)
                prompt.Append((messages[i] ?? throw new ArgumentException($"Message {i} is null.", nameof(messages))).Text);
            return prompt.ToString();
        }
    }
}
