using Microsoft.Extensions.AI;
using Saber.Text;

namespace Saber.Extensions.AI.Tests;

/// <summary>JinjaChatPromptTemplate over the LLaDA-8B-Instruct and Dream-v0-Instruct-7B templates; expected prompts written by hand.</summary>
public class JinjaChatPromptTemplateTests
{
    private const string LLaDATemplate =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

    private const string DreamTemplate =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    private static readonly IChatPromptTemplate LLaDA = new JinjaChatPromptTemplate(LLaDATemplate, "<|startoftext|>", "<|endoftext|>");
    private static readonly IChatPromptTemplate Dream = new JinjaChatPromptTemplate(DreamTemplate, null, "<|endoftext|>");

    [Test]
    public void InstructionsComeFirstAsASystemTurn()
    {
        var options = new ChatOptions { Instructions = "Be brief." };
        Assert.That(Dream.Format([new ChatMessage(ChatRole.User, "Hi")], options), Is.EqualTo(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
        Assert.That(LLaDA.Format([new ChatMessage(ChatRole.User, "Hi")], options), Is.EqualTo(
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"));
    }

    [Test]
    public void AFinalAssistantTurnIsContinued()
    {
        ChatMessage[] messages = [new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "Sure, here")];
        Assert.That(Dream.Format(messages, null), Is.EqualTo(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure, here"));
        // LLaDA's template trims the content, so the cut is after the trimmed text.
        ChatMessage[] padded = [new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "  Sure ")];
        Assert.That(LLaDA.Format(padded, null), Is.EqualTo(
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nSure"));
    }

    [Test]
    public void AnEmptyFinalAssistantTurnIsTheGenerationPrompt()
    {
        Assert.That(Dream.Format([new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "")], null),
            Is.EqualTo(Dream.Format([new(ChatRole.User, "Hi")], null)));
    }

    [Test]
    public void ATemplateThatDropsTheFinalTextCannotBeContinued()
    {
        var roles = new JinjaChatPromptTemplate("{% for m in messages %}{{ m.role }};{% endfor %}", null, null);
        Assert.That(roles.Format([new(ChatRole.User, "Hi")], null), Is.EqualTo("user;"));
        Assert.Throws<InvalidOperationException>(() => roles.Format([new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "xyz")], null));
    }

    [Test]
    public void UnsupportedTemplatesFailAtConstruction()
    {
        var error = Assert.Throws<ChatTemplateException>(() => new JinjaChatPromptTemplate("{{ messages | tojson }}", null, null));
        Assert.That(error!.Message, Is.EqualTo("chat template: unsupported filter 'tojson' at line 1, column 15"));
    }
}
