using Microsoft.Extensions.AI;
using Saber.Service;

namespace Saber.Extensions.AI.Tests;

/// <summary>Responses, streaming, finish reasons, usage, cancellation, services and disposal, on the scripted synthetic model.</summary>
public class ClientTests
{
    private static readonly ChatMessage[] Question = [new(ChatRole.System, "be kind"), new(ChatRole.User, "say hello")];
    private const string Prompt = "system: be kind\nuser: say hello\nassistant: ";
    private static readonly LetterTokenizer Letters = new();

    /// <summary>The completion the scripted model knows: an end-of-text ('#') at generation index 23.</summary>
    private const string Completion = "hello there my good friend#and some text after the end";

    /// <summary>The scripted model; with traps (default) it first favours wrong letters at generation indices 1, 4, 9 and 14.</summary>
    private static ScriptedDenoiser Model(string completion = Completion, bool traps = true)
    {
        var model = new ScriptedDenoiser();
        model.Add(Letters.Encode(Prompt), LetterTokenizer.Target(completion), seed: 3, traps ? [1, 4, 9, 14] : []);
        return model;
    }

    private static ChatOptions Options(string strategy, float temperature, int? limit = 32, params (string Key, object Value)[] extra)
    {
        var options = new ChatOptions { MaxOutputTokens = limit, Temperature = temperature, Seed = 7, AdditionalProperties = new() { ["strategy"] = strategy } };
        foreach (var (key, value) in extra) options.AdditionalProperties[key] = value;
        return options;
    }

    public static IEnumerable<TestCaseData> Strategies()
    {
        foreach (float t in new[] { 0f, 1.5f })
        {
            yield return new TestCaseData(Options("saber", t)).SetArgDisplayNames("saber", $"T={t}");
            yield return new TestCaseData(Options("saber", t, 32, ("variant", "paper"), ("block_length", 8))).SetArgDisplayNames("saber paper K=8", $"T={t}");
            yield return new TestCaseData(Options("saber", t, 32, ("backtracking", false))).SetArgDisplayNames("saber no backtracking", $"T={t}");
            yield return new TestCaseData(Options("low-confidence", t, 32, ("block_length", 8))).SetArgDisplayNames("low-confidence K=8", $"T={t}");
            yield return new TestCaseData(Options("low-confidence", t, 30, ("steps", 15), ("metric", "margin"))).SetArgDisplayNames("low-confidence S=15 L=30", $"T={t}");
            yield return new TestCaseData(Options("threshold", t, 32, ("threshold", 0.6), ("block_length", 16))).SetArgDisplayNames("threshold", $"T={t}");
            yield return new TestCaseData(Options("factor", t, 32, ("factor", 2.0), ("block_length", 16))).SetArgDisplayNames("factor", $"T={t}");
        }
    }

    [TestCaseSource(nameof(Strategies))]
    public async Task AResponseIsTheEnginesDecodeOfTheTemplatedPromptCutAtTheFirstEndOfText(ChatOptions options)
    {
        ScriptedDenoiser model = Model();
        await using var engine = new SaberEngine(model);
        using var client = new SaberChatClient(engine, Letters, new SaberChatClientOptions { ModelId = "scripted" });
        ChatResponse response = await client.GetResponseAsync(Question, options);

        // The same request straight to the engine, built by hand.
        int[] prompt = Letters.Encode(Prompt);
        SaberChatRequest request = client.CreateRequest(Question, options);
        Assert.That(request.PromptTokens, Is.EqualTo(prompt));
        SequenceResult direct = await engine.DecodeAsync(prompt, request.Options);
        int[] output = direct.Tokens[..options.MaxOutputTokens!.Value].ToArray();
        int eos = Array.IndexOf(output, LetterTokenizer.Eos);
        string expected = Letters.Decode(eos >= 0 ? output[..eos] : output);

        Assert.That(response.Text, Is.EqualTo(expected));
        Assert.That(response.Messages, Has.Count.EqualTo(1));
        Assert.That(response.Messages[0].Role, Is.EqualTo(ChatRole.Assistant));
        Assert.That(response.FinishReason, Is.EqualTo(eos >= 0 ? ChatFinishReason.Stop : ChatFinishReason.Length));
        Assert.That(response.ModelId, Is.EqualTo("scripted"));
        Assert.That(response.ResponseId, Is.Not.Null.And.Not.Empty);
        Assert.That(response.Messages[0].MessageId, Is.EqualTo(response.ResponseId));
        var raw = (SequenceResult)response.RawRepresentation!;
        Assert.That(raw.Canvas, Is.EqualTo(direct.Canvas), "the engine's result, bit-identical to the direct decode");
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(prompt.Length));
        Assert.That(response.Usage.OutputTokenCount, Is.EqualTo(eos >= 0 ? eos : output.Length));
        Assert.That(response.Usage.TotalTokenCount, Is.EqualTo(prompt.Length + response.Usage.OutputTokenCount));
        Assert.That(response.Usage.AdditionalCounts![SaberChatClient.NfeCount], Is.EqualTo(direct.Nfe));
        Assert.That(response.Usage.AdditionalCounts[SaberChatClient.GeneratedPositionsCount], Is.EqualTo(request.Options.GenerationLength));
        Assert.That(response.Usage.AdditionalCounts[SaberChatClient.RemasksCount], Is.EqualTo(direct.RemaskStatistics!.Remasks));
        Assert.That(response.Usage.AdditionalCounts[SaberChatClient.RemasksChangedCount], Is.EqualTo(direct.RemaskStatistics.RemasksChanged));
        Assert.That(response.Usage.AdditionalCounts[SaberChatClient.PositionsRemaskedTwiceCount], Is.EqualTo(direct.RemaskStatistics.PositionsRemaskedTwice));
    }

    [TestCaseSource(nameof(Strategies))]
    public async Task StreamedTextConcatenatesToTheResponseAndNeverEmitsTextThatLaterChanges(ChatOptions options)
    {
        await using var engine = new SaberEngine(Model());
        using var client = new SaberChatClient(engine, Letters, new SaberChatClientOptions { ModelId = "scripted" });
        ChatResponse response = await client.GetResponseAsync(Question, options);
        string final = response.Text;

        var updates = new List<ChatResponseUpdate>();
        string streamed = "";
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Question, options))
        {
            updates.Add(update);
            streamed += update.Text;
            // At the moment it is emitted, every prefix streamed so far is a prefix of the final text: nothing is ever taken back.
            Assert.That(final.StartsWith(streamed, StringComparison.Ordinal), $"update {updates.Count}: '{streamed}' is not a prefix of '{final}'");
        }
        Assert.That(streamed, Is.EqualTo(final));

        ChatResponseUpdate last = updates[^1];
        Assert.That(last.FinishReason, Is.EqualTo(response.FinishReason));
        Assert.That(updates.Take(updates.Count - 1).Select(u => u.FinishReason), Is.All.Null);
        UsageContent usage = last.Contents.OfType<UsageContent>().Single();
        Assert.That(usage.Details.InputTokenCount, Is.EqualTo(response.Usage!.InputTokenCount));
        Assert.That(usage.Details.OutputTokenCount, Is.EqualTo(response.Usage.OutputTokenCount));
        Assert.That(usage.Details.AdditionalCounts, Is.EquivalentTo(response.Usage.AdditionalCounts!));
        Assert.That(updates.Take(updates.Count - 1).SelectMany(u => u.Contents).OfType<UsageContent>(), Is.Empty);
        Assert.That(updates.Select(u => u.ResponseId).Distinct().Count(), Is.EqualTo(1));
        Assert.That(updates.All(u => u.MessageId == u.ResponseId && u.Role == ChatRole.Assistant && u.ModelId == "scripted"));
        ChatResponse assembled = updates.ToChatResponse();
        Assert.That(assembled.Text, Is.EqualTo(final), "M.E.AI's own assembly of the updates");
        Assert.That(assembled.FinishReason, Is.EqualTo(response.FinishReason));
    }

    [TestCase(0f)]
    [TestCase(1.5f)]
    public async Task WithBacktrackingTheTextArrivesOnlyInTheLastUpdate(float temperature)
    {
        ScriptedDenoiser model = Model();
        await using var engine = new SaberEngine(model);
        using var client = new SaberChatClient(engine, Letters);
        foreach (string variant in new[] { "reference", "paper" })
        {
            ChatOptions options = Options("saber", temperature, 32, ("variant", variant), ("block_length", 8));
            var updates = new List<ChatResponseUpdate>();
            await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Question, options)) updates.Add(update);
            Assert.That(updates, Has.Count.EqualTo(1), variant);
            Assert.That(updates[0].Text, Is.EqualTo((await client.GetResponseAsync(Question, options)).Text));
            Assert.That(updates[0].FinishReason, Is.Not.Null);
            var step = (SequenceStep)updates[0].RawRepresentation!;
            Assert.That(step.Finished);
            long nfe = updates[0].Contents.OfType<UsageContent>().Single().Details.AdditionalCounts![SaberChatClient.NfeCount];
            Assert.That(nfe, Is.GreaterThan(4), $"{variant}: a decode of several steps, none of which streamed text");
        }
    }

    [Test]
    public async Task TheScriptedModelMakesSaberRemaskSoWaitingForTheEndIsNeeded()
    {
        // The rule is not vacuous here: a Saber decode of this request re-masks committed positions, in earlier blocks too.
        await using var engine = new SaberEngine(Model());
        using var client = new SaberChatClient(engine, Letters);
        SaberChatRequest request = client.CreateRequest(Question, Options("saber", 0f, 32, ("block_length", 8)));
        SequenceResult result = await engine.DecodeAsync(request.PromptTokens, request.Options with { Trace = true });
        var remasked = result.Trace.SelectMany(t => t.Remasked.Select(r => (t.Step, r.Position))).ToList();
        Assert.That(remasked, Is.Not.Empty);
        Assert.That(result.RemaskStatistics!.Remasks, Is.EqualTo(remasked.Count));
        // The client's usage reports them, streamed or not.
        ChatResponse response = await client.GetResponseAsync(Question, Options("saber", 0f, 32, ("block_length", 8)));
        Assert.That(response.Usage!.AdditionalCounts![SaberChatClient.RemasksCount], Is.EqualTo(remasked.Count));
        ChatResponseUpdate last = await client.GetStreamingResponseAsync(Question, Options("saber", 0f, 32, ("block_length", 8))).LastAsync();
        Assert.That(last.Contents.OfType<UsageContent>().Single().Details.AdditionalCounts![SaberChatClient.RemasksCount], Is.EqualTo(remasked.Count));
        int p = request.PromptTokens.Length;
        Assert.That(result.Trace.Any(t => t.Remasked.Any(r => r.Position - p < 8) && t.Committed.All(c => c.Position - p >= 8)),
            "a step working on a later block re-masked a position of the first block");
    }

    [TestCase("low-confidence")]
    [TestCase("threshold")]
    [TestCase("factor")]
    [TestCase("saber-no-backtracking")]
    public async Task WithoutRemaskingTheCommittedPrefixStreamsAsItGrows(string strategy)
    {
        await using var engine = new SaberEngine(Model());
        using var client = new SaberChatClient(engine, Letters);
        ChatOptions options = strategy switch
        {
            "low-confidence" => Options("low-confidence", 0f, 32, ("block_length", 8)),
            "threshold" => Options("threshold", 0f, 32, ("block_length", 4)),
            "factor" => Options("factor", 0f, 32, ("block_length", 4)),
            _ => Options("saber", 0f, 32, ("block_length", 4), ("backtracking", false)),
        };
        var texts = new List<string>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Question, options))
            if (update.Text.Length > 0) texts.Add(update.Text);
        Assert.That(texts, Has.Count.GreaterThan(2), "text arrived in several pieces before the end");
        Assert.That(string.Concat(texts), Is.EqualTo((await client.GetResponseAsync(Question, options)).Text));
    }

    [Test]
    public async Task TextEndsBeforeTheFirstEndOfTextWithStopElseLengthAtTheLimit()
    {
        await using var engine = new SaberEngine(Model(traps: false));
        using var client = new SaberChatClient(engine, Letters);
        ChatOptions greedy = Options("low-confidence", 0f, 32);
        ChatResponse stop = await client.GetResponseAsync(Question, greedy);
        Assert.That(stop.Text, Is.EqualTo("hello there my good friend"));
        Assert.That(stop.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(stop.Usage!.OutputTokenCount, Is.EqualTo(26));

        ChatResponse length = await client.GetResponseAsync(Question, Options("low-confidence", 0f, 11));
        Assert.That(length.Text, Is.EqualTo("hello there"));
        Assert.That(length.FinishReason, Is.EqualTo(ChatFinishReason.Length));
        Assert.That(length.Usage!.OutputTokenCount, Is.EqualTo(11));

        // L = 20 with K = 8: G = 24 positions are decoded, 20 returned.
        ChatResponse rounded = await client.GetResponseAsync(Question, Options("low-confidence", 0f, 20, ("block_length", 8)));
        Assert.That(rounded.Text, Is.EqualTo("hello there my good "));
        Assert.That(rounded.FinishReason, Is.EqualTo(ChatFinishReason.Length));
        Assert.That(rounded.Usage!.AdditionalCounts![SaberChatClient.GeneratedPositionsCount], Is.EqualTo(24));
        Assert.That(((SequenceResult)rounded.RawRepresentation!).Tokens.Length, Is.EqualTo(24));

        string streamed = "";
        ChatFinishReason? reason = null;
        await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync(Question, greedy))
        {
            streamed += u.Text;
            reason ??= u.FinishReason;
        }
        Assert.That((streamed, reason), Is.EqualTo(("hello there my good friend", (ChatFinishReason?)ChatFinishReason.Stop)));
    }

    [Test]
    public async Task AnEndOfTextAtTheFirstPositionGivesAnEmptyStoppedResponse()
    {
        await using var engine = new SaberEngine(Model("#hello", traps: false));
        using var client = new SaberChatClient(engine, Letters);
        ChatResponse r = await client.GetResponseAsync(Question, Options("low-confidence", 0f, 8));
        Assert.That((r.Text, r.FinishReason, r.Usage!.OutputTokenCount), Is.EqualTo(("", (ChatFinishReason?)ChatFinishReason.Stop, (long?)0)));
        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync(Question, Options("low-confidence", 0f, 8))) updates.Add(u);
        Assert.That(updates, Has.Count.EqualTo(1));
        Assert.That(updates[0].Text, Is.Empty);
        Assert.That(updates[0].FinishReason, Is.EqualTo(ChatFinishReason.Stop));
    }

    [Test]
    public async Task ConcurrentRequestsEachGetTheirOwnDecode()
    {
        await using var engine = new SaberEngine(Model(), new SaberEngineOptions { MaxBatchSize = 4 });
        using var client = new SaberChatClient(engine, Letters);
        ChatOptions[] options = Strategies().Select(c => (ChatOptions)c.Arguments[0]!).ToArray();
        string[] alone = new string[options.Length];
        for (int i = 0; i < options.Length; i++) alone[i] = (await client.GetResponseAsync(Question, options[i])).Text;
        ChatResponse[] together = await Task.WhenAll(options.Select(o => client.GetResponseAsync(Question, o)));
        Assert.That(together.Select(r => r.Text), Is.EqualTo(alone));
    }

    [Test]
    public async Task ACancelledRequestIsCancelledAtTheNextStep()
    {
        var holding = new HoldingDenoiser(Model());
        await using var engine = new SaberEngine(holding);
        using var client = new SaberChatClient(engine, Letters);
        Assert.That(async () => await client.GetResponseAsync(Question, null, new CancellationToken(true)), Throws.InstanceOf<OperationCanceledException>());

        using var cancel = new CancellationTokenSource();
        holding.Hold();
        Task<ChatResponse> pending = client.GetResponseAsync(Question, Options("low-confidence", 0f), cancel.Token);
        await holding.Arrived.WaitAsync(TimeSpan.FromSeconds(30));
        cancel.Cancel();
        holding.Release();
        Assert.That(async () => await pending, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(engine.ActiveCount + engine.WaitingCount, Is.Zero);
    }

    [Test]
    public async Task CancellingAStreamStopsItAndItsDecode()
    {
        await using var engine = new SaberEngine(Model());
        using var client = new SaberChatClient(engine, Letters);
        using var cancel = new CancellationTokenSource();
        int seen = 0;
        Assert.That(async () =>
        {
            await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync(Question, Options("low-confidence", 0f, 32), cancel.Token))
            {
                seen++;
                cancel.Cancel();
            }
        }, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(seen, Is.EqualTo(1));

        // Leaving a stream early cancels its decode too.
        await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync(Question, Options("low-confidence", 0f, 32)))
            break;
        for (int i = 0; i < 100 && engine.ActiveCount + engine.WaitingCount > 0; i++) await Task.Delay(20);
        Assert.That(engine.ActiveCount + engine.WaitingCount, Is.Zero);
    }

    [Test]
    public async Task GetServiceReturnsTheClientMetadataEngineAndTokenizer()
    {
        await using var engine = new SaberEngine(Model());
        var settings = new SaberChatClientOptions { ModelId = "tiny" };
        using var client = new SaberChatClient(engine, Letters, settings);
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.That(metadata!.ProviderName, Is.EqualTo("saber"));
        Assert.That(metadata.DefaultModelId, Is.EqualTo("tiny"));
        Assert.That(client.GetService<SaberEngine>(), Is.SameAs(engine));
        Assert.That(client.GetService<ITextTokenizer>(), Is.SameAs(Letters));
        Assert.That(client.GetService<LetterTokenizer>(), Is.SameAs(Letters));
        Assert.That(client.GetService<IChatClient>(), Is.SameAs(client));
        Assert.That(client.GetService<SaberChatClient>(), Is.SameAs(client));
        Assert.That(client.GetService<SaberChatClientOptions>(), Is.SameAs(settings));
        Assert.That(client.GetService<string>(), Is.Null);
        Assert.That(client.GetService(typeof(SaberEngine), "key"), Is.Null);
        Assert.That(() => client.GetService(null!), Throws.ArgumentNullException);
    }

    [Test]
    public async Task TheClientDoesNotOwnTheEngineUnlessTold()
    {
        await using var engine = new SaberEngine(Model(traps: false));
        var client = new SaberChatClient(engine, Letters);
        client.Dispose();
        client.Dispose();
        Assert.That(() => client.GetResponseAsync(Question), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(() => client.GetStreamingResponseAsync(Question), Throws.InstanceOf<ObjectDisposedException>());
        using var second = new SaberChatClient(engine, Letters);
        Assert.That((await second.GetResponseAsync(Question, Options("threshold", 0f, 8))).Text, Is.EqualTo("hello th"), "the engine still serves");

        var owned = new SaberEngine(Model());
        var owner = new SaberChatClient(owned, Letters, new SaberChatClientOptions { DisposeEngine = true });
        owner.Dispose();
        Assert.That(() => owned.DecodeAsync(new[] { 1, 2 }, new DecodeOptions { GenerationLength = 4 }), Throws.InstanceOf<ObjectDisposedException>());

        var ownedAsync = new SaberEngine(Model());
        await using (new SaberChatClient(ownedAsync, Letters, new SaberChatClientOptions { DisposeEngine = true })) { }
        Assert.That(() => ownedAsync.DecodeAsync(new[] { 1, 2 }, new DecodeOptions { GenerationLength = 4 }), Throws.InstanceOf<ObjectDisposedException>());
    }

    /// <summary>Decodes right to left: the text of a longer prefix does not extend the text of a shorter one.</summary>
    private sealed class ReversingTokenizer : ITextTokenizer
    {
        public int? EosId => LetterTokenizer.Eos;
        public int[] Encode(string text) => Letters.Encode(text);
        public string Decode(ReadOnlySpan<int> tokens) => new(Letters.Decode(tokens).Reverse().ToArray());
    }

    [Test]
    public async Task ATokenizerThatIsNotPrefixStableFailsTheStreamInsteadOfEmittingWrongText()
    {
        await using var engine = new SaberEngine(Model());
        using var client = new SaberChatClient(engine, new ReversingTokenizer());
        Assert.That(async () =>
        {
            await foreach (ChatResponseUpdate _ in client.GetStreamingResponseAsync(Question, Options("low-confidence", 0f, 32))) { }
        }, Throws.InvalidOperationException.With.Message.Contains("prefix-stable"));
    }
}
