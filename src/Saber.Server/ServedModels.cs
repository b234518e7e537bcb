using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Saber.Extensions.AI;
using Saber.Onnx;
using Saber.Service;

namespace Saber.Server;

/// <summary>One served model: its engine, a chat client (role-tagged prompts) and a completion client (the prompt as is).</summary>
public sealed class ServedModel
{
    internal ServedModel(string id, LocalModel model, SaberEngine engine, SaberChatClient chat, SaberChatClient completion, DateTimeOffset created)
    {
        Id = id;
        Model = model;
        Engine = engine;
        Chat = chat;
        Completion = completion;
        ChatPipeline = Traced(chat);
        CompletionPipeline = Traced(completion);
        Created = created;
    }

    /// <summary>
    /// The client behind Microsoft.Extensions.AI's <see cref="OpenTelemetryChatClient"/>: a <c>chat {model}</c> span per
    /// request following OpenTelemetry's GenAI semantic conventions (source <see cref="SaberServer.TelemetrySourceName"/>),
    /// without the messages' text (<see cref="OpenTelemetryChatClient.EnableSensitiveData"/> false whatever the environment says).
    /// </summary>
    private static IChatClient Traced(SaberChatClient client) =>
        new ChatClientBuilder(client)
            .UseOpenTelemetry(sourceName: SaberServer.TelemetrySourceName, configure: telemetry => telemetry.EnableSensitiveData = false)
            .Build();

    /// <summary>The model id requests name.</summary>
    public string Id { get; }

    /// <summary>The loaded model.</summary>
    public LocalModel Model { get; }

    /// <summary>The engine that batches this model's requests.</summary>
    public SaberEngine Engine { get; }

    /// <summary>The client of <c>/v1/chat/completions</c> (<see cref="ChatPromptTemplate.RoleTagged"/>).</summary>
    public SaberChatClient Chat { get; }

    /// <summary>The client of <c>/v1/completions</c> (<see cref="ChatPromptTemplate.Raw"/>).</summary>
    public SaberChatClient Completion { get; }

    /// <summary>What <c>/v1/chat/completions</c> calls: <see cref="Chat"/> with a span per request (<see cref="SaberServer.TelemetrySourceName"/>).</summary>
    public IChatClient ChatPipeline { get; }

    /// <summary>What <c>/v1/completions</c> calls: <see cref="Completion"/> with a span per request (<see cref="SaberServer.TelemetrySourceName"/>).</summary>
    public IChatClient CompletionPipeline { get; }

    /// <summary>When the model was loaded.</summary>
    public DateTimeOffset Created { get; }
}

/// <summary>
/// The models the server serves, loaded from <see cref="SaberServerOptions.Models"/> when the host starts; looked up by id
/// only. Disposing it disposes the engines (cancelling their unfinished requests) and the models.
/// </summary>
public sealed class ServedModels : IAsyncDisposable
{
    private readonly Dictionary<string, ServedModel> models = new(StringComparer.Ordinal);
    private volatile bool loaded;

    public ServedModels(IOptions<SaberServerOptions> server, IOptions<SaberServiceOptions> service, ILoggerFactory logging, IMeterFactory? meters = null)
    {
        SaberServerOptions settings = server.Value;
        settings.Validate();
        SaberEngineOptions engineOptions = service.Value.ToEngineOptions(disposeDenoiser: false);
        IReadOnlyDictionary<string, string> configured = settings.Models.Count > 0
            ? settings.Models
            : new Dictionary<string, string> { ["tiny"] = SaberServerOptions.ShippedModelDirectory() };
        ILogger log = logging.CreateLogger<ServedModels>();
        try
        {
            foreach (var (id, directory) in configured)
            {
                LocalModel model = LocalModel.Open(directory, settings.ToEngineOptions(), logging.CreateLogger<OnnxDenoiser>());
                SaberEngine engine;
                IChatPromptTemplate chat;
                try
                {
                    // An imported checkpoint's own chat template (an unsupported one fails the start, naming the
                    // construct); the shipped models have none and keep the role-tagged prompt.
                    chat = model.CreatePromptTemplate();
                    engine = new SaberEngine(model.Denoiser, engineOptions with { ModelId = id }, logging.CreateLogger<SaberEngine>(), meters);
                }
                catch
                {
                    model.Dispose();
                    throw;
                }
                IModelTokenizer tokenizer = model.Tokenizer;
                SaberChatClientOptions Client(IChatPromptTemplate template) => new()
                {
                    ModelId = id,
                    MaxSequenceLength = model.Denoiser.MaxSequenceLength,
                    DefaultMaxOutputTokens = settings.DefaultMaxTokens,
                    PromptTemplate = template,
                };
                models[id] = new ServedModel(id, model, engine,
                    new SaberChatClient(engine, tokenizer, Client(chat)),
                    new SaberChatClient(engine, tokenizer, Client(ChatPromptTemplate.Raw)),
                    DateTimeOffset.UtcNow);
                log.LogInformation("Serving model {Model} from {Directory}", id, directory);
            }
        }
        catch
        {
            DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
        loaded = true;
    }

    /// <summary>Every model is loaded (and none disposed).</summary>
    public bool Ready => loaded;

    /// <summary>The served models, in configuration order.</summary>
    public IReadOnlyCollection<ServedModel> All => models.Values;

    /// <summary>The model with this id, if served.</summary>
    public bool TryGet(string id, out ServedModel model) => models.TryGetValue(id, out model!);

    public async ValueTask DisposeAsync()
    {
        loaded = false;
        foreach (ServedModel m in models.Values)
        {
            // The pipelines release their ActivitySource and Meter (the Saber clients they wrap do not own the engine).
            m.ChatPipeline.Dispose();
            m.CompletionPipeline.Dispose();
            await m.Engine.DisposeAsync().ConfigureAwait(false);
            m.Model.Dispose();
        }
        models.Clear();
    }
}
