namespace Saber.Extensions.AI;

/// <summary>Settings of a <see cref="SaberChatClient"/>; every one has a default.</summary>
public sealed record SaberChatClientOptions
{
    /// <summary>The model's name: <see cref="Microsoft.Extensions.AI.ChatClientMetadata.DefaultModelId"/> and every response's <c>ModelId</c> (default null).</summary>
    public string? ModelId { get; init; }

    /// <summary>
    /// The longest canvas (prompt + generated positions) the model takes, e.g. <c>OnnxDenoiser.MaxSequenceLength</c>. When
    /// set, a request that does not fit is rejected before submission with an <see cref="ArgumentException"/> naming
    /// <c>MaxOutputTokens</c> and the largest value that fits; when null, the engine's own check rejects it (naming G).
    /// </summary>
    public int? MaxSequenceLength { get; init; }

    /// <summary>The output limit when <c>ChatOptions.MaxOutputTokens</c> is not set (default 64, as <c>saber generate</c>).</summary>
    public int DefaultMaxOutputTokens { get; init; } = 64;

    /// <summary>
    /// The block length K when the request has no <c>"block_length"</c> (default 32, as the CLI); an output limit at or
    /// below it decodes as one block of exactly that length.
    /// </summary>
    public int DefaultBlockLength { get; init; } = 32;

    /// <summary>
    /// The key/value cache when the request has no <c>"cache"</c> (default <see cref="CacheOptions.None"/>: the exact
    /// decode). A policy other than none needs an engine whose model has a cache graph.
    /// </summary>
    public CacheOptions DefaultCache { get; init; } = CacheOptions.None;

    /// <summary>How the messages become the prompt (default <see cref="ChatPromptTemplate.RoleTagged"/>).</summary>
    public IChatPromptTemplate PromptTemplate { get; init; } = ChatPromptTemplate.RoleTagged;

    /// <summary>
    /// True: disposing the client disposes the engine. False (default): the engine belongs to the caller, who may share it
    /// between clients and other users and disposes it after them.
    /// </summary>
    public bool DisposeEngine { get; init; }

    internal void Validate()
    {
        if (MaxSequenceLength is < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxSequenceLength), MaxSequenceLength, $"MaxSequenceLength must be >= 1 or null; got {MaxSequenceLength}.");
        if (DefaultMaxOutputTokens < 1 || DefaultMaxOutputTokens > DecodeOptions.MaxGenerationLength)
            throw new ArgumentOutOfRangeException(nameof(DefaultMaxOutputTokens), DefaultMaxOutputTokens,
                $"DefaultMaxOutputTokens must lie in [1, {DecodeOptions.MaxGenerationLength}]; got {DefaultMaxOutputTokens}.");
        if (DefaultBlockLength < 1 || DefaultBlockLength > DecodeOptions.MaxGenerationLength)
            throw new ArgumentOutOfRangeException(nameof(DefaultBlockLength), DefaultBlockLength,
                $"DefaultBlockLength must lie in [1, {DecodeOptions.MaxGenerationLength}]; got {DefaultBlockLength}.");
        ArgumentNullException.ThrowIfNull(PromptTemplate, nameof(PromptTemplate));
        ArgumentNullException.ThrowIfNull(DefaultCache, nameof(DefaultCache));
        if (DefaultCache.RefreshEvery is < 1)
            throw new ArgumentOutOfRangeException(nameof(DefaultCache), DefaultCache.RefreshEvery,
                $"DefaultCache.RefreshEvery must be >= 1 or null; got {DefaultCache.RefreshEvery}.");
    }
}
