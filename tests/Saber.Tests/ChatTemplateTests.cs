using Saber.Text;

namespace Saber.Tests;

/// <summary>
/// ChatTemplate on the real chat templates of LLaDA-8B-Instruct and Dream-v0-Instruct-7B, against prompts written by
/// hand from what the templates say, and the Jinja constructs it supports and rejects.
/// </summary>
public class ChatTemplateTests
{
    // As in the models' tokenizer_config.json; "\n" there is a JSON escape, so these hold newline characters.
    private const string LLaDATemplate =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

    private const string DreamTemplate =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    private static readonly Dictionary<string, object?> LLaDATokens = new() { ["bos_token"] = "<|startoftext|>", ["eos_token"] = "<|endoftext|>" };

    private static ChatTurn System(string text) => new("system", text);
    private static ChatTurn User(string text) => new("user", text);
    private static ChatTurn Assistant(string text) => new("assistant", text);

    private static string Render(string template, bool addGenerationPrompt, params ChatTurn[] messages) =>
        ChatTemplate.Parse(template).Render(messages, addGenerationPrompt, LLaDATokens);

    // LLaDA: bos before the first turn; each turn <|start_header_id|>role<|end_header_id|>\n\n + trimmed content + <|eot_id|>;
    // then always the assistant header (the template does not read add_generation_prompt).
    private const string LLaDAAssistantHeader = "<|start_header_id|>assistant<|end_header_id|>\n\n";

    [TestCase(true)]
    [TestCase(false)]
    public void LLaDASystemAndUser(bool addGenerationPrompt)
    {
        Assert.That(Render(LLaDATemplate, addGenerationPrompt, System("You are terse."), User("What is 2+2?")), Is.EqualTo(
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" +
            LLaDAAssistantHeader));
    }

    [Test]
    public void LLaDAUserOnlyTrimsTheContent()
    {
        Assert.That(Render(LLaDATemplate, true, User("  Hello there \n\t")), Is.EqualTo(
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>" + LLaDAAssistantHeader));
    }

    [Test]
    public void LLaDAMultiTurn()
    {
        Assert.That(Render(LLaDATemplate, true, User("Hi"), Assistant("Hello! How can I help?"), User("Tell me a joke.")), Is.EqualTo(
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>" +
            LLaDAAssistantHeader));
    }

    [Test]
    public void LLaDAWithoutMessagesIsTheAssistantHeader() =>
        Assert.That(Render(LLaDATemplate, true), Is.EqualTo(LLaDAAssistantHeader));

    [Test]
    public void LLaDAWithoutABosTokenFailsAsJinjaDoes()
    {
        // bos_token + content with bos_token undefined is an UndefinedError in Jinja too. The template's two newlines
        // (in '<|end_header_id|>\n\n') put the '+' of "bos_token + content" on line 3, column 99.
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(LLaDATemplate).Render([User("Hi")], true));
        Assert.That(error!.Message, Is.EqualTo("chat template: 'bos_token' is undefined at line 3, column 99"));
    }

    // Dream (Qwen2 ChatML): a default system turn unless the first message is one; each turn
    // <|im_start|>role\n + content (not trimmed) + <|im_end|>\n; <|im_start|>assistant\n only with add_generation_prompt.
    private const string DreamDefaultSystem = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";

    [Test]
    public void DreamSystemAndUser()
    {
        Assert.That(Render(DreamTemplate, true, System("Be brief."), User("Hi")), Is.EqualTo(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
        Assert.That(Render(DreamTemplate, false, System("Be brief."), User(" Hi ")), Is.EqualTo(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"));
    }

    [Test]
    public void DreamUserOnlyGetsTheDefaultSystemPrompt()
    {
        Assert.That(Render(DreamTemplate, true, User("Hi")), Is.EqualTo(
            DreamDefaultSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
        Assert.That(Render(DreamTemplate, false, User("Hi")), Is.EqualTo(DreamDefaultSystem + "<|im_start|>user\nHi<|im_end|>\n"));
    }

    [Test]
    public void DreamMultiTurn()
    {
        Assert.That(Render(DreamTemplate, true, User("Write a haiku."), Assistant("Leaves fall\nsoftly."), User("Another.")), Is.EqualTo(
            DreamDefaultSystem +
            "<|im_start|>user\nWrite a haiku.<|im_end|>\n" +
            "<|im_start|>assistant\nLeaves fall\nsoftly.<|im_end|>\n" +
            "<|im_start|>user\nAnother.<|im_end|>\n" +
            "<|im_start|>assistant\n"));
    }

    [Test]
    public void DreamWithoutMessages()
    {
        Assert.That(Render(DreamTemplate, false), Is.EqualTo(""));
        Assert.That(Render(DreamTemplate, true), Is.EqualTo("<|im_start|>assistant\n"));
    }

    private static string RenderWith(string template, params ChatTurn[] messages) =>
        ChatTemplate.Parse(template).Render(messages, addGenerationPrompt: true, new Dictionary<string, object?>
        {
            ["name"] = "Ada", ["items"] = new[] { "a", "b", "c" }, ["count"] = 3, ["nothing"] = null,
            ["settings"] = new Dictionary<string, object?> { ["mode"] = "fast" },
        });

    [TestCase("{{ 'a\\'b\\\"c\\\\d\\te\\nf' }}", "a'b\"c\\d\te\nf")]
    [TestCase("{{ \"double\" + 'single' }}", "doublesingle")]
    [TestCase("{{ name ~ '-' ~ count ~ '-' ~ true ~ '-' ~ nothing }}", "Ada-3-True-None")]
    [TestCase("{{ count + 2 }} {{ count - 5 }} {{ -count }}", "5 -2 -3")]
    [TestCase("{% for x in items %}{{ loop.index }}/{{ loop.index0 }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %};{% endfor %}", "1/0F;2/1;3/2L;")]
    [TestCase("{% for x in items %}{{ x }}{{ loop.length }}{% endfor %}", "a3b3c3")]
    [TestCase("{% set x = 'outer' %}{% for i in items %}{% set x = i %}{{ x }}{% endfor %}{{ x }}", "abcouter")]
    [TestCase("{% if count > 5 %}big{% elif count > 2 %}mid{% else %}small{% endif %}", "mid")]
    [TestCase("{% if count < 3 %}lt{% elif count <= 3 %}le{% endif %}{% if count >= 3 %}ge{% endif %}", "lege")]
    [TestCase("{% if 'b' in items and 'z' not in items %}yes{% endif %}", "yes")]
    [TestCase("{% if 'da' in name %}sub{% endif %}{% if 'mode' in settings %}key{% endif %}", "subkey")]
    [TestCase("{% if not nothing or false %}A{% endif %}{% if name and count %}B{% endif %}", "AB")]
    [TestCase("{{ settings.mode }} {{ settings['mode'] }} {{ items[0] }}{{ items[-1] }}", "fast fast ac")]
    [TestCase("{{ messages[-1].role }}:{{ messages[-1]['content'] }}", "user:hello")]
    [TestCase("{{ name | upper }}{{ name | lower }}{{ items | length }}{{ name | length }}{{ '  x ' | trim }}", "ADAada33x")]
    [TestCase("{{ missing }}|{% if missing is defined %}d{% endif %}{% if missing is not defined %}u{% endif %}{% if missing is undefined %}U{% endif %}", "|uU")]
    [TestCase("{% if nothing is none %}n{% endif %}{% if name is not none %}s{% endif %}{% if missing %}m{% endif %}", "ns")]
    [TestCase("{{ [1, 'two'] }} {{ settings }} {{ false }}", "[1, 'two'] {'mode': 'fast'} False")]
    [TestCase("{% if add_generation_prompt %}gen{% endif %}{% if messages | length == 1 %}one{% endif %}", "genone")]
    [TestCase("{# a comment #}x{#- trimmed -#}  y", "xy")]
    [TestCase("{%- if true -%}\n  a  \n{%- endif -%}\n", "a")]
    [TestCase("{{- '  a  ' -}}   \n  {{ 'b' }}", "  a  b")]
    // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before one; {{ }} keeps both.
    [TestCase("{% for x in items %}\n  {{ x }}\n{% endfor %}\n", "  a\n  b\n  c\n")]
    [TestCase("<\n    {% if true %}\nyes\n    {% endif %}\n>", "<\nyes\n>")]
    public void SupportedConstructs(string template, string expected) =>
        Assert.That(RenderWith(template, User("hello")), Is.EqualTo(expected));

    [TestCase("{{ x | tojson }}", "unsupported filter 'tojson' at line 1, column 8")]
    [TestCase("{{ x | join(', ') }}", "unsupported filter 'join' at line 1, column 8")]
    [TestCase("{{ x | trim('-') }}", "unsupported arguments to filter 'trim' at line 1, column 12")]
    [TestCase("{{ x is string }}", "unsupported test 'string' at line 1, column 9")]
    [TestCase("{% macro m() %}{% endmacro %}", "unsupported statement 'macro' at line 1, column 4")]
    [TestCase("{% include 'other.j2' %}", "unsupported statement 'include' at line 1, column 4")]
    [TestCase("{{ range(3) }}", "unsupported function 'range' at line 1, column 4")]
    [TestCase("{{ m.strip() }}", "unsupported method call '.strip()' at line 1, column 6")]
    [TestCase("{{ 2 * 3 }}", "unsupported operator '*' at line 1, column 6")]
    [TestCase("{{ 7 // 2 }}", "unsupported operator '//' at line 1, column 6")]
    [TestCase("{{ a if b else c }}", "unsupported conditional expression 'x if c else y' at line 1, column 6")]
    [TestCase("{% for k, v in d %}{% endfor %}", "unsupported for loop over several variables at line 1, column 9")]
    [TestCase("{% for x in xs if x %}{% endfor %}", "unsupported loop filter 'for ... if' at line 1, column 16")]
    [TestCase("{% for x in xs %}{% else %}{% endfor %}", "unsupported statement 'for ... else' at line 1, column 21")]
    [TestCase("{% set ns.x = 1 %}", "unsupported attribute assignment 'set a.b' at line 1, column 10")]
    [TestCase("{% set x %}a{% endset %}", "unsupported block assignment '{% set x %}...{% endset %}' at line 1, column 4")]
    [TestCase("{{ {'a': 1} }}", "unsupported dict literal at line 1, column 4")]
    [TestCase("{{ xs[1:] }}", "unsupported slice at line 1, column 8")]
    [TestCase("{{ 1.5 }}", "unsupported float literal at line 1, column 4")]
    [TestCase("{{ '\\u0041' }}", "unsupported string escape '\\u' at line 1, column 5")]
    [TestCase("{% if x %}a", "'{% if %}' without '{% endif %}' at line 1, column 4")]
    [TestCase("{% endfor %}", "'{% endfor %}' without a matching opening tag at line 1, column 4")]
    [TestCase("{{ x ", "unclosed tag (no '}}') at line 1, column 1")]
    [TestCase("{{ 'open }}", "unterminated string literal at line 1, column 4")]
    [TestCase("first line\n  second {{ x | tojson }}", "unsupported filter 'tojson' at line 2, column 17")]
    public void UnsupportedOrMalformedConstructsFailAtParseTime(string template, string message)
    {
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template));
        Assert.That(error!.Message, Is.EqualTo("chat template: " + message));
        Assert.That(error.RaisedMessage, Is.Null);
    }

    [TestCase("{{ foo + 'x' }}", "'foo' is undefined at line 1, column 8")]
    [TestCase("{{ foo.bar }}", "'foo' is undefined at line 1, column 8")]
    [TestCase("{% for x in nope %}{% endfor %}", "'nope' is undefined at line 1, column 13")]
    [TestCase("{{ name + 1 }}", "cannot apply '+' to a string and an integer at line 1, column 9")]
    [TestCase("{{ count | trim }}", "filter 'trim' cannot take an integer at line 1, column 12")]
    public void RenderingErrorsNameTheProblem(string template, string message)
    {
        var error = Assert.Throws<ChatTemplateException>(() => RenderWith(template, User("hello")));
        Assert.That(error!.Message, Is.EqualTo("chat template: " + message));
    }

    [Test]
    public void RaiseExceptionCarriesTheTemplatesMessage()
    {
        const string template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user') }}{% endif %}ok";
        ChatTemplate parsed = ChatTemplate.Parse(template);
        Assert.That(parsed.Render([User("hi")], true), Is.EqualTo("ok"));
        var error = Assert.Throws<ChatTemplateException>(() => parsed.Render([Assistant("hi")], true));
        Assert.That(error!.RaisedMessage, Is.EqualTo("Conversation roles must start with user"));
        Assert.That(error.Message, Is.EqualTo("chat template: raise_exception at line 1, column 42: Conversation roles must start with user"));
        Assert.That((error.Line, error.Column), Is.EqualTo((1, 42)));
    }

    [Test]
    public void RendersDeterministicallyAndKeepsItsSource()
    {
        ChatTemplate template = ChatTemplate.Parse(DreamTemplate);
        Assert.That(template.Source, Is.EqualTo(DreamTemplate));
        ChatTurn[] messages = [User("a"), Assistant("b")];
        Assert.That(template.Render(messages, true), Is.EqualTo(template.Render(messages, true)));
    }
}
