using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Saber.Extensions.AI;
using Saber.Service;

namespace Saber.Onnx.Tests;

/// <summary><c>services.AddSaberChatClient(modelDirectory)</c>: the model's own limit, tokenizer and template, a composable pipeline, disposal.</summary>
public class ChatClientRegistrationTests
{
    private static string TinyDirectory => Path.Combine(AppContext.BaseDirectory, "models", "tiny");

    /// <summary>models/tiny's longest canvas (its metadata <c>max_positions</c>, in its model card).</summary>
    private const int TinyMaxPositions = 512;

    private static readonly ChatOptions Greedy = new() { MaxOutputTokens = 16, AdditionalProperties = new() { [SaberChatOptionKeys.BlockLength] = 8 } };

    [Test]
    public async Task TheRegisteredClientAnswersAsAClientBuiltByHandOverTheSameModel()
    {
        var services = new ServiceCollection();
        services.AddSaberChatClient(TinyDirectory);
        await using ServiceProvider provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        IChatClient client = provider.GetRequiredService<IChatClient>();
        ChatMessage[] chat = [new(ChatRole.User, "def add(a, b):\n")];
        ChatResponse registered = await client.GetResponseAsync(chat, Greedy);

        // The README's hand-written way: the model opened, its tokenizer, its limit, the role-tagged prompt (no chat template).
        using LocalModel model = LocalModel.Open(TinyDirectory);
        await using var engine = new SaberEngine(model.Denoiser);
        using var byHand = new SaberChatClient(engine, model.Tokenizer, new SaberChatClientOptions
        {
            ModelId = "tiny", MaxSequenceLength = model.Denoiser.MaxSequenceLength, PromptTemplate = ChatPromptTemplate.RoleTagged,
        });
        ChatResponse expected = await byHand.GetResponseAsync(chat, Greedy);

        Assert.Multiple(() =>
        {
            Assert.That(registered.Text, Is.EqualTo(expected.Text));
            Assert.That(registered.FinishReason, Is.EqualTo(expected.FinishReason));
            Assert.That(registered.Usage!.InputTokenCount, Is.EqualTo(expected.Usage!.InputTokenCount));
            Assert.That(registered.Usage.OutputTokenCount, Is.EqualTo(expected.Usage.OutputTokenCount));
            Assert.That(registered.ModelId, Is.EqualTo("tiny"), "the directory's name");
            ChatClientMetadata metadata = client.GetService<ChatClientMetadata>()!;
            Assert.That(metadata.ProviderName, Is.EqualTo("saber"));
            Assert.That(metadata.DefaultModelId, Is.EqualTo("tiny"));
        });
    }

    [Test]
    public async Task AnOutputTooLongForTheModelIsRefusedWithTheModelsOwnLimit()
    {
        var services = new ServiceCollection();
        services.AddSaberChatClient(TinyDirectory);
        await using ServiceProvider provider = services.BuildServiceProvider();
        IChatClient client = provider.GetRequiredService<IChatClient>();
        var tooLong = new ChatOptions { MaxOutputTokens = TinyMaxPositions, AdditionalProperties = new() { [SaberChatOptionKeys.BlockLength] = 8 } };
        var e = Assert.ThrowsAsync<ContextLengthExceededException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "x = 1\n")], tooLong));
        // The chat client's own check, which needs MaxSequenceLength (without it the engine refuses G instead).
        Assert.That(e!.MaxSequenceLength, Is.EqualTo(TinyMaxPositions));
        Assert.That(e.Message, Does.Contain($"the model takes at most {TinyMaxPositions}"));
        // The largest fit: whole blocks of 8 in what the prompt leaves of the model's positions.
        Assert.That(e.LargestFit, Is.EqualTo((TinyMaxPositions - e.PromptTokens) / 8 * 8));
    }

    [Test]
    public async Task TheBuilderComposesMiddlewareAndConfigureChangesTheModelsSettings()
    {
        var services = new ServiceCollection();
        services.AddSaberChatClient(TinyDirectory, o => o with { ModelId = "renamed", DefaultMaxOutputTokens = 5 })
            .UseOpenTelemetry(sourceName: "Saber.Onnx.Tests");
        await using ServiceProvider provider = services.BuildServiceProvider();
        IChatClient client = provider.GetRequiredService<IChatClient>();
        Assert.That(client.GetService<OpenTelemetryChatClient>(), Is.Not.Null, "the middleware is in the registered pipeline");
        var saber = client.GetService<SaberChatClient>()!;
        Assert.That(saber, Is.SameAs(provider.GetRequiredService<SaberChatClient>()));
        Assert.That(saber.Options.MaxSequenceLength, Is.EqualTo(TinyMaxPositions), "kept from the model");

        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "import ")],
            new ChatOptions { AdditionalProperties = new() { [SaberChatOptionKeys.BlockLength] = 5 } });
        Assert.That(response.ModelId, Is.EqualTo("renamed"));
        Assert.That(response.Usage!.AdditionalCounts![SaberChatClient.GeneratedPositionsCount], Is.EqualTo(5), "DefaultMaxOutputTokens 5");
    }

    [Test]
    public async Task DisposingTheContainerDisposesTheEngineAndTheClients()
    {
        var services = new ServiceCollection();
        services.AddSaberChatClient(TinyDirectory);
        ServiceProvider provider = services.BuildServiceProvider();
        IChatClient client = provider.GetRequiredService<IChatClient>();
        SaberEngine engine = provider.GetRequiredService<SaberEngine>();
        Assert.That(engine.Options.DisposeDenoiser, Is.False, "the container owns the model");
        await provider.DisposeAsync();

        Assert.ThrowsAsync<ObjectDisposedException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "x")], Greedy));
        Assert.ThrowsAsync<ObjectDisposedException>(() => engine.DecodeAsync(new int[] { 1, 2, 3 }, new DecodeOptions { GenerationLength = 8, BlockLength = 8 }));
    }

    [Test]
    public void AMissingDirectoryFailsTheRegistrationNamingIt()
    {
        string missing = Path.Combine(Path.GetTempPath(), "saber-no-such-model-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<DirectoryNotFoundException>(() => new ServiceCollection().AddSaberChatClient(missing));
        Assert.That(e!.Message, Does.Contain(missing));
    }

    [Test]
    public void ASecondModelInTheSameContainerIsRefused()
    {
        var services = new ServiceCollection();
        services.AddSaberChatClient(TinyDirectory);
        var e = Assert.Throws<InvalidOperationException>(() => services.AddSaberChatClient(TinyDirectory));
        Assert.That(e!.Message, Does.Contain(nameof(LocalModel)));
    }
}
