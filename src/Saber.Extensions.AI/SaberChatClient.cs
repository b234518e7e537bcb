using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Saber.Service;

namespace Saber.Extensions.AI;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="SaberEngine"/>: the conversation becomes one prompt (an
/// <see cref="IChatPromptTemplate"/>), the prompt is decoded by the engine alongside its other requests, and the generated
/// ids become the assistant's text up to the first end-of-text id.
/// </summary>
/// <remarks>
/// <para><b>Options.</b> <see cref="ChatOptions.MaxOutputTokens"/> is the output limit L (default
/// <see cref="SaberChatClientOptions.DefaultMaxOutputTokens"/>, 64). The block length K is
/// <c>AdditionalProperties["block_length"]</c>, else <see cref="SaberChatClientOptions.DefaultBlockLength"/> (32), or L
/// itself when L is smaller. The generation length G is L rounded up to a multiple of K; positions past L are decoded
/// (they are context) but never returned, so a response holds at most L tokens. <see cref="ChatOptions.Temperature"/> is
/// T (default 0, greedy); <see cref="ChatOptions.Seed"/> the Philox seed (default 0; a negative seed is read as its
/// two's-complement <c>ulong</c>). The strategy and its parameters come from <see cref="ChatOptions.AdditionalProperties"/>
/// (<see cref="SaberChatOptionKeys"/>). Invalid values throw <see cref="ArgumentException"/> naming them, before
/// anything is submitted; so does an L that does not fit the model (when
/// <see cref="SaberChatClientOptions.MaxSequenceLength"/> is known). <c>TopP</c>, <c>TopK</c>, penalties,
/// <c>StopSequences</c>, <c>ResponseFormat</c>, tools and <c>ModelId</c> are ignored: the samplers have no such
/// controls.</para>
/// <para><b>Responses.</b> The text is the decoded ids of the first L generated positions, cut before the first
/// end-of-text id (<see cref="ITextTokenizer.EndOfTextIds"/>): <see cref="ChatFinishReason.Stop"/> when one was found, else
/// <see cref="ChatFinishReason.Length"/>. <see cref="UsageDetails.InputTokenCount"/> is the prompt's length,
/// <see cref="UsageDetails.OutputTokenCount"/> the returned ids (the end-of-text id not counted),
/// <see cref="UsageDetails.TotalTokenCount"/> their sum; <see cref="UsageDetails.AdditionalCounts"/> holds
/// <c>"nfe"</c> (model calls of the decode), <c>"generated_positions"</c> (G), the re-mask statistics <c>"remasks"</c>,
/// <c>"remasks_changed"</c> and <c>"positions_remasked_twice"</c> (<see cref="RemaskStatistics"/>) and, when the model
/// reports FLOPs and the response is not streamed, <c>"forward_flops"</c>. <see cref="ChatResponse.ModelId"/> is
/// <see cref="SaberChatClientOptions.ModelId"/>; <see cref="ChatResponse.RawRepresentation"/> the engine's
/// <see cref="SequenceResult"/> (the last <see cref="SequenceStep"/> when streaming).</para>
/// <para><b>Streaming and re-masking.</b> <see cref="GetStreamingResponseAsync"/> emits text only once it can no longer
/// change (spec §3–§5). Low-confidence (§4), threshold and factor (§5) and Saber without backtracking (§3 with step 7 skipped) never
/// re-mask a committed token, and a committed token is never rewritten, so the longest run of committed positions at the
/// start of the generation is final; its text is emitted as it grows, step by step (stopping at an end-of-text id, and
/// at L). Saber with backtracking may re-mask, at any step that does not finish the decode, any decoded generation
/// position before the active block's end (§3 step 7's candidates; in the paper variant all but the step's fresh draft),
/// including positions of earlier, completed blocks; how many it re-masks depends on the next steps' drafts. So no
/// decoded position is final before the decode ends, and with backtracking the whole text arrives in the last update.
/// In every case the updates' texts concatenate to exactly the text <see cref="GetResponseAsync"/> returns for the same
/// request (this needs a prefix-stable tokenizer, see <see cref="ITextTokenizer"/>); the last update carries the
/// finish reason and a <see cref="UsageContent"/>, and all share one <c>ResponseId</c> and <c>MessageId</c>.</para>
/// <para><b>Lifetime.</b> Any number of threads may call the client at once (the engine batches them). The client does
/// not own the engine unless <see cref="SaberChatClientOptions.DisposeEngine"/> is set; <see cref="Dispose"/> and
/// <see cref="DisposeAsync"/> then dispose it too (which cancels its unfinished requests). After disposal the client's
/// methods throw <see cref="ObjectDisposedException"/>. Cancellation: a request's token cancels its decode at the next
/// step (the task or the enumeration then throws <see cref="OperationCanceledException"/>); leaving a stream early
/// cancels its decode.</para>
/// </remarks>
public sealed class SaberChatClient : IChatClient, IAsyncDisposable
{
    /// <summary><see cref="ChatClientMetadata.ProviderName"/>.</summary>
    public const string ProviderName = "saber";

    /// <summary>The <see cref="UsageDetails.AdditionalCounts"/> key of the decode's model calls.</summary>
    public const string NfeCount = "nfe";

    /// <summary>
    /// The <see cref="UsageDetails.AdditionalCounts"/> key of the model FLOPs the decode computed (<see cref="SequenceResult.ForwardFlops"/>);
    /// absent when the model does not report FLOPs, and from streamed responses (the engine's steps do not carry them).
    /// </summary>
    public const string ForwardFlopsCount = "forward_flops";

    /// <summary>The <see cref="UsageDetails.AdditionalCounts"/> key of G, the positions decoded.</summary>
    public const string GeneratedPositionsCount = "generated_positions";

    /// <summary>
    /// The <see cref="UsageDetails.AdditionalCounts"/> key of the decode's re-masks (<see cref="RemaskStatistics.Remasks"/>;
    /// 0 for the strategies that never re-mask), in streamed responses too.
    /// </summary>
    public const string RemasksCount = "remasks";

    /// <summary>The <see cref="UsageDetails.AdditionalCounts"/> key of the re-masks whose position came back as a different token (<see cref="RemaskStatistics.RemasksChanged"/>).</summary>
    public const string RemasksChangedCount = "remasks_changed";

    /// <summary>The <see cref="UsageDetails.AdditionalCounts"/> key of the positions re-masked more than once (<see cref="RemaskStatistics.PositionsRemaskedTwice"/>).</summary>
    public const string PositionsRemaskedTwiceCount = "positions_remasked_twice";

    private readonly SaberEngine engine;
    private readonly ITextTokenizer tokenizer;
    private readonly SaberChatClientOptions settings;
    private int disposed;

    /// <param name="engine">The engine that decodes; shared with others unless <see cref="SaberChatClientOptions.DisposeEngine"/>.</param>
    /// <param name="tokenizer">The model's tokenizer, e.g. Saber.Onnx's <c>CharacterTextTokenizer</c> for the shipped models.</param>
    /// <param name="options">Settings; null takes the defaults.</param>
    public SaberChatClient(SaberEngine engine, ITextTokenizer tokenizer, SaberChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(tokenizer);
        options ??= new SaberChatClientOptions();
        options.Validate();
        this.engine = engine;
        this.tokenizer = tokenizer;
        settings = options;
        Metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: options.ModelId);
    }

    /// <summary>Provider <c>"saber"</c> and the model id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>The engine requests go to.</summary>
    public SaberEngine Engine => engine;

    /// <summary>The tokenizer.</summary>
    public ITextTokenizer Tokenizer => tokenizer;

    /// <summary>The settings in force.</summary>
    public SaberChatClientOptions Options => settings;

    /// <summary>
    /// What a call with these arguments submits: the prompt text and ids and the mapped <see cref="DecodeOptions"/>,
    /// without decoding anything.
    /// </summary>
    /// <exception cref="ArgumentException">An invalid option, named; an output limit that does not fit the model.</exception>
    public SaberChatRequest CreateRequest(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        IReadOnlyList<ChatMessage> list = messages as IReadOnlyList<ChatMessage> ?? messages.ToList();
        string prompt = settings.PromptTemplate.Format(list, options);
        int[] tokens = tokenizer.Encode(prompt);
        var (decode, limit) = ChatOptionsMapping.Map(options, tokens.Length, settings);
        return new SaberChatRequest(prompt, tokens, decode, limit);
    }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        SaberChatRequest request = CreateRequest(messages, options);
        SequenceResult result = await engine.DecodeAsync(request.PromptTokens, request.Options, cancellationToken).ConfigureAwait(false);
        var (text, outputTokens, finish) = Complete(result.Canvas, request);
        string id = NewId();
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text) { MessageId = id })
        {
            ResponseId = id,
            ModelId = settings.ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = finish,
            Usage = Usage(request, outputTokens, result.Nfe, result.RemaskStatistics, result.ForwardFlops),
            RawRepresentation = result,
        };
    }

    /// <inheritdoc />
    /// <remarks>
    /// Text is emitted only once it can no longer change; see the class remarks ("Streaming and re-masking"). Invalid
    /// options throw from this call, before anything is submitted.
    /// </remarks>
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        SaberChatRequest request = CreateRequest(messages, options);
        return StreamAsync(request, cancellationToken);
    }

    /// <summary>
    /// True when the strategy never re-masks a committed token, so that the committed prefix of the generation is final
    /// as it grows; false for Saber with backtracking, whose text is final only when the decode ends.
    /// </summary>
    public static bool StreamsBeforeTheEnd(DecodingStrategy strategy) => strategy is not SaberStrategy { Backtracking: true };

    private async IAsyncEnumerable<ChatResponseUpdate> StreamAsync(SaberChatRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string id = NewId();
        DateTimeOffset created = DateTimeOffset.UtcNow;
        int promptLength = request.PromptTokens.Length, limit = request.MaxOutputTokens;
        bool early = StreamsBeforeTheEnd(request.Options.Strategy);
        // decoded[g]: generation position g holds a committed token (tracked from the steps' commits and re-masks).
        var decoded = new bool[request.Options.GenerationLength];
        int finalPrefix = 0;            // generation positions [0, finalPrefix) are committed for good (early strategies)
        bool textComplete = false;      // the final prefix reached an end-of-text id or the limit
        string emitted = "";
        SequenceStep? last = null;
        int nfe = 0;

        await foreach (SequenceStep step in engine.DecodeStepsAsync(request.PromptTokens, request.Options, cancellationToken).ConfigureAwait(false))
        {
            cancellationToken.ThrowIfCancellationRequested();   // also when the engine has already buffered the steps
            last = step;
            nfe++;
            if (!early || textComplete || step.Finished) continue;
            foreach (CommittedToken c in step.Trace.Committed) decoded[c.Position - promptLength] = true;
            foreach (RemaskedToken r in step.Trace.Remasked) decoded[r.Position - promptLength] = false;   // never, for these strategies
            int before = finalPrefix;
            while (finalPrefix < limit && decoded[finalPrefix] && !IsEos(step.Canvas[promptLength + finalPrefix])) finalPrefix++;
            textComplete = finalPrefix == limit || (decoded[finalPrefix] && IsEos(step.Canvas[promptLength + finalPrefix]));
            if (finalPrefix == before) continue;
            string text = tokenizer.Decode(step.Canvas.AsSpan(promptLength, finalPrefix));
            string delta = Extend(emitted, text);
            if (delta.Length == 0) continue;
            emitted = text;
            yield return Update(id, created, delta);
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (last is null)
            throw new InvalidOperationException("The engine finished the request without a step.");
        var (full, outputTokens, finish) = Complete(last.Canvas, request);
        ChatResponseUpdate final = Update(id, created, Extend(emitted, full));
        final.FinishReason = finish;
        final.Contents.Add(new UsageContent(Usage(request, outputTokens, nfe, last.RemaskStatistics)));
        final.RawRepresentation = last;
        yield return final;
    }

    private bool IsEos(int token) => tokenizer.EndOfTextIds.Contains(token);

    /// <summary>The part of <paramref name="text"/> after <paramref name="emitted"/>, which must be its prefix.</summary>
    private string Extend(string emitted, string text) =>
        text.StartsWith(emitted, StringComparison.Ordinal)
            ? text[emitted.Length..]
            : throw new InvalidOperationException(
                $"The tokenizer ({tokenizer.GetType().Name}) is not prefix-stable: the text of a longer final prefix does not start with the text already streamed. See ITextTokenizer.");

    private ChatResponseUpdate Update(string id, DateTimeOffset created, string text)
    {
        var update = new ChatResponseUpdate(ChatRole.Assistant, text.Length == 0 ? [] : [new TextContent(text)])
        {
            ResponseId = id,
            MessageId = id,
            ModelId = settings.ModelId,
            CreatedAt = created,
        };
        return update;
    }

    /// <summary>The response text of a final canvas: the first L generated ids, cut before the first end-of-text id.</summary>
    private (string Text, int OutputTokens, ChatFinishReason Finish) Complete(int[] canvas, SaberChatRequest request)
    {
        ReadOnlySpan<int> output = canvas.AsSpan(request.PromptTokens.Length, request.MaxOutputTokens);
        int eos = tokenizer.IndexOfEndOfText(output);
        if (eos >= 0) output = output[..eos];
        return (tokenizer.Decode(output), output.Length, eos >= 0 ? ChatFinishReason.Stop : ChatFinishReason.Length);
    }

    private static UsageDetails Usage(SaberChatRequest request, int outputTokens, int nfe, RemaskStatistics? remasks, long? forwardFlops = null)
    {
        var counts = new AdditionalPropertiesDictionary<long>
        {
            [NfeCount] = nfe,
            [GeneratedPositionsCount] = request.Options.GenerationLength,
        };
        if (forwardFlops is long flops) counts[ForwardFlopsCount] = flops;
        if (remasks is not null)   // the engine counts them for every request
        {
            counts[RemasksCount] = remasks.Remasks;
            counts[RemasksChangedCount] = remasks.RemasksChanged;
            counts[PositionsRemaskedTwiceCount] = remasks.PositionsRemaskedTwice;
        }
        return new UsageDetails
        {
            InputTokenCount = request.PromptTokens.Length,
            OutputTokenCount = outputTokens,
            TotalTokenCount = request.PromptTokens.Length + outputTokens,
            AdditionalCounts = counts,
        };
    }

    private static string NewId() => "saber-" + Guid.NewGuid().ToString("N");

    /// <summary>
    /// This client for <see cref="IChatClient"/> or its own type, <see cref="Metadata"/> for <see cref="ChatClientMetadata"/>,
    /// the engine for <see cref="SaberEngine"/>, the tokenizer for <see cref="ITextTokenizer"/> (or its own type), the
    /// settings for <see cref="SaberChatClientOptions"/>; null for anything else and for any non-null key.
    /// </summary>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(engine)) return engine;
        if (serviceType.IsInstanceOfType(tokenizer)) return tokenizer;
        if (serviceType == typeof(SaberChatClientOptions)) return settings;
        return null;
    }

    /// <summary>Marks the client disposed; disposes the engine too when <see cref="SaberChatClientOptions.DisposeEngine"/> is set (waiting for it). Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0) return;
        if (settings.DisposeEngine)
            engine.DisposeAsync().AsTask().GetAwaiter().GetResult();   // the engine's disposal never needs the caller's context
    }

    /// <summary>As <see cref="Dispose"/>, awaiting the engine's disposal.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0) return;
        if (settings.DisposeEngine)
            await engine.DisposeAsync().ConfigureAwait(false);
    }
}
