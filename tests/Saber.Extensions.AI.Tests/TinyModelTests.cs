using Microsoft.Extensions.AI;
using Saber.Onnx;
using Saber.Service;

namespace Saber.Extensions.AI.Tests;

/// <summary>The shipped model (models/tiny) and its character tokenizer behind the client, as the CLI loads them.</summary>
public class TinyModelTests
{
    private static string TinyDirectory => Path.Combine(AppContext.BaseDirectory, "models", "tiny");

    private static readonly ChatMessage[] Code = [new(ChatRole.User, "def fibonacci(n):\n\t")];

    public static IEnumerable<TestCaseData> Strategies()
    {
        foreach (float t in new[] { 0f, 0.8f })
        {
            yield return new TestCaseData("saber", t, Array.Empty<(string, object)>()).SetArgDisplayNames("saber", $"T={t}");
            yield return new TestCaseData("saber", t, new (string, object)[] { ("backtracking", false) }).SetArgDisplayNames("saber no backtracking", $"T={t}");
            yield return new TestCaseData("low-confidence", t, Array.Empty<(string, object)>()).SetArgDisplayNames("low-confidence", $"T={t}");
            yield return new TestCaseData("threshold", t, new (string, object)[] { ("threshold", 0.5) }).SetArgDisplayNames("threshold", $"T={t}");
            yield return new TestCaseData("factor", t, new (string, object)[] { ("factor", 1.0) }).SetArgDisplayNames("factor", $"T={t}");
        }
    }

    [TestCaseSource(nameof(Strategies))]
    public async Task ResponsesAndStreamsOfTheShippedModelMatchItsDirectDecode(string strategy, float temperature, (string Key, object Value)[] extra)
    {
        using LocalModel model = LocalModel.Open(TinyDirectory, new OnnxEngineOptions { IntraOpThreads = 1 });
        await using var engine = new SaberEngine(model.Denoiser);
        var tokenizer = new CharacterTextTokenizer((CharacterTokenizer)model.Tokenizer);
        using var client = new SaberChatClient(engine, tokenizer, new SaberChatClientOptions
        {
            ModelId = "tiny",
            MaxSequenceLength = model.Denoiser.MaxSequenceLength,
            PromptTemplate = ChatPromptTemplate.Raw,
        });
        var options = new ChatOptions { MaxOutputTokens = 24, Temperature = temperature, Seed = 5, AdditionalProperties = new() { ["strategy"] = strategy, ["block_length"] = 8 } };
        foreach (var (key, value) in extra) options.AdditionalProperties[key] = value;

        ChatResponse response = await client.GetResponseAsync(Code, options);

        // What `saber generate` would do: the prompt text as is, encoded by the character tokenizer, decoded by the engine.
        int[] prompt = model.Tokenizer.Encode("def fibonacci(n):\n\t");
        SequenceResult direct = await engine.DecodeAsync(prompt, client.CreateRequest(Code, options).Options);
        Assert.That(response.Text, Is.EqualTo(model.Tokenizer.Decode(direct.Tokens)), "CharacterTokenizer.Decode also stops at the first end-of-text");
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(prompt.Length));
        Assert.That(response.Usage.AdditionalCounts![SaberChatClient.NfeCount], Is.EqualTo(direct.Nfe));
        Assert.That(response.ModelId, Is.EqualTo("tiny"));

        string streamed = "";
        int textUpdates = 0;
        ChatResponseUpdate? last = null;
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Code, options))
        {
            streamed += update.Text;
            if (update.Text.Length > 0) textUpdates++;
            Assert.That(response.Text.StartsWith(streamed, StringComparison.Ordinal), $"'{streamed}' is not a prefix of '{response.Text}'");
            last = update;
        }
        Assert.That(streamed, Is.EqualTo(response.Text));
        Assert.That(last!.FinishReason, Is.EqualTo(response.FinishReason));
        if (strategy == "saber" && extra.Length == 0)
            Assert.That(textUpdates, Is.LessThanOrEqualTo(1), "with backtracking, text only at the end");
    }

    [Test]
    public async Task AnOutputLimitBeyondTheShippedModelsPositionsIsRejected()
    {
        using LocalModel model = LocalModel.Open(TinyDirectory, new OnnxEngineOptions { IntraOpThreads = 1 });
        await using var engine = new SaberEngine(model.Denoiser);
        using var client = new SaberChatClient(engine, new CharacterTextTokenizer((CharacterTokenizer)model.Tokenizer),
            new SaberChatClientOptions { MaxSequenceLength = model.Denoiser.MaxSequenceLength, PromptTemplate = ChatPromptTemplate.Raw });
        var e = Assert.ThrowsAsync<ContextLengthExceededException>(() => client.GetResponseAsync(Code, new ChatOptions { MaxOutputTokens = 512 }));
        Assert.That(e!.Message, Does.Contain("ChatOptions.MaxOutputTokens=512").And.Contain("the model takes at most 512").And.Contain("at most 480 fits here"));
        Assert.That((e.MaxOutputTokens, e.MaxSequenceLength, e.BlockLength, e.LargestFit), Is.EqualTo((512, 512, 32, 480)));
        Assert.That(engine.ForwardPasses, Is.Zero);

        // Without MaxSequenceLength the engine's own check rejects it, as an ArgumentException too.
        using var unaware = new SaberChatClient(engine, new CharacterTextTokenizer((CharacterTokenizer)model.Tokenizer), new SaberChatClientOptions { PromptTemplate = ChatPromptTemplate.Raw });
        Assert.That(async () => await unaware.GetResponseAsync(Code, new ChatOptions { MaxOutputTokens = 512 }),
            Throws.InstanceOf<ArgumentException>().With.Message.Contains("the model takes at most 512"));
    }

    [Test]
    public void TheCharacterAdapterEncodesLikeTheTokenizerAndDecodesUpToTheEndOfText()
    {
        var tokenizer = CharacterTokenizer.Load(Path.Combine(TinyDirectory, "tokenizer.json"));
        var adapter = new CharacterTextTokenizer(tokenizer);
        Assert.That(adapter.EosId, Is.EqualTo(tokenizer.EosId));
        Assert.That(adapter.Encode("x = 1é"), Is.EqualTo(tokenizer.Encode("x = 1é")));
        Assert.That(adapter.Encode("é"), Is.EqualTo(new[] { tokenizer.UnknownId }));
        Assert.That(adapter.Decode(tokenizer.Encode("ab")), Is.EqualTo("ab"));
        Assert.That(adapter.Tokenizer, Is.SameAs(tokenizer));
    }
}

/// <summary>The README's IChatClient example, as written there (the model directory aside).</summary>
public class ReadmeExampleTests
{
    [Test]
    public async Task TheReadmeExampleRuns()
    {
        var output = new StringWriter();
        string directory = Path.Combine(AppContext.BaseDirectory, "models", "tiny");

        using LocalModel model = LocalModel.Open(directory);
        await using var engine = new SaberEngine(model.Denoiser);
        using IChatClient client = new SaberChatClient(engine, new CharacterTextTokenizer((CharacterTokenizer)model.Tokenizer), new SaberChatClientOptions
        {
            ModelId = "tiny",
            MaxSequenceLength = model.Denoiser.MaxSequenceLength,   // rejects a too large MaxOutputTokens up front
            PromptTemplate = ChatPromptTemplate.Raw,                // models/tiny has no chat format: complete the text as is
        });
        var options = new ChatOptions { MaxOutputTokens = 48, Temperature = 0, AdditionalProperties = new() { ["strategy"] = "saber", ["block_length"] = 16 } };
        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "def fibonacci(n):\n\t")], options);
        output.WriteLine($"{response.Text} ({response.FinishReason}, NFE {response.Usage!.AdditionalCounts!["nfe"]})");
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "x = ")], options))
            output.Write(update.Text);

        TestContext.Out.WriteLine(output.ToString());
        Assert.That(output.ToString(), Does.Contain("NFE "));
    }
}
