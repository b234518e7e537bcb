namespace Saber.Server;

/// <summary>
/// The server's settings, bound from the configuration section <see cref="SectionName"/> ("Server"). The engines'
/// own settings (capacity, batch size, ...) come from the section "Saber" (<c>SaberServiceOptions</c>), one engine per model.
/// </summary>
public sealed class SaberServerOptions
{
    /// <summary>The configuration section: <c>"Server"</c>.</summary>
    public const string SectionName = "Server";

    /// <summary>The address <c>saber serve</c> listens on unless <c>--urls</c> or the <c>urls</c> setting says otherwise: loopback only.</summary>
    public const string DefaultUrl = "http://127.0.0.1:8080";

    /// <summary>
    /// Model id to model directory (model.onnx and tokenizer.json). Requests name a model by id only, never by path.
    /// Empty: the shipped models/tiny as <c>"tiny"</c>.
    /// </summary>
    public Dictionary<string, string> Models { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The largest request body in bytes (default 1 MiB); a larger one is answered 413.</summary>
    public long MaxRequestBodyBytes { get; set; } = 1 << 20;

    /// <summary>The longest prompt in tokens, after the chat template (default 2048); a longer one is answered 400.</summary>
    public int MaxPromptTokens { get; set; } = 2048;

    /// <summary>The largest <c>max_tokens</c> a request may ask for (default 512); more is answered 400.</summary>
    public int MaxTokens { get; set; } = 512;

    /// <summary><c>max_tokens</c> when a request gives none (default 64; <see cref="MaxTokens"/> where that is smaller).</summary>
    public int DefaultMaxTokens { get; set; } = 64;

    /// <summary>
    /// Serve <c>GET /metrics</c> (default true): the engines' <c>Saber.Service</c> meter and ASP.NET Core's request and
    /// connection meters in Prometheus's text format, through OpenTelemetry's Prometheus exporter.
    /// </summary>
    public bool Metrics { get; set; } = true;

    /// <summary>
    /// The most generation requests (chat, completions, canvas) the server handles at once, across all models (default
    /// 64); a stream counts until it ends or its client leaves. One more is answered 429 <c>too_many_concurrent_requests</c>
    /// with <c>Retry-After</c>. Distinct from each engine's <c>Saber:Capacity</c> (default 256, 503 <c>engine_full</c>):
    /// the default keeps one model's engine below its capacity, so the server refuses early and cheaply, before any decode.
    /// A request's body is read (within <see cref="RequestBodyTimeoutSeconds"/>) before it takes a slot.
    /// </summary>
    public int MaxConcurrentRequests { get; set; } = 64;

    /// <summary>
    /// The most forward passes one request may cost, per generated position (default 4): a request whose worst case
    /// (<see cref="WorkLimit.WorstCaseForwardPasses"/>: low-confidence's <c>steps</c>, at most <c>G</c> for the others) is above
    /// this times <c>G</c> (<c>max_tokens</c> rounded up to the block length) is answered 400 <c>too_much_work</c> before it
    /// reaches the engine, so a small body cannot hold a model's batch for minutes.
    /// </summary>
    public int MaxForwardPassesPerToken { get; set; } = 4;

    /// <summary>
    /// The longest a generation request's body may take to arrive, in seconds (default 10), counted from the end of its
    /// headers; a slower body is answered 408 <c>request_timeout</c> and its connection closed. Bodies are read before a
    /// <see cref="MaxConcurrentRequests"/> slot is taken, so this bounds how long a trickling client occupies a connection,
    /// never a slot.
    /// </summary>
    public double RequestBodyTimeoutSeconds { get; set; } = 10;

    /// <summary>
    /// The slowest a request body may arrive, in bytes per second averaged after Kestrel's 5 s grace period (default
    /// 240, Kestrel's own); slower is answered 408 <c>request_timeout</c>. 0 turns the check off (the
    /// <see cref="RequestBodyTimeoutSeconds"/> deadline still holds).
    /// </summary>
    public double MinRequestBodyBytesPerSecond { get; set; } = 240;

    /// <summary>
    /// API keys a client must send as <c>Authorization: Bearer KEY</c> (OpenAI clients send their key so); empty (default)
    /// with no <see cref="ApiKeysFile"/>: no authentication. With keys every endpoint but <c>/healthz</c>, <c>/readyz</c>
    /// and the static page <c>/</c> answers 401 <c>invalid_api_key</c> to a request without a valid key.
    /// </summary>
    public string[] ApiKeys { get; set; } = [];

    /// <summary>A file of API keys, one a line (blank lines and lines starting with <c>#</c> ignored), read at the start; added to <see cref="ApiKeys"/>.</summary>
    public string? ApiKeysFile { get; set; }

    /// <summary>
    /// Serve a non-loopback address (<c>http://0.0.0.0</c>, <c>http://*</c>, a LAN address, a host name) without API keys
    /// (default false: the server refuses to start, naming the address). Also turns off the loopback Host check that
    /// guards a key-less server against DNS rebinding.
    /// </summary>
    public bool AllowUnauthenticatedRemote { get; set; }

    /// <summary>ONNX Runtime intra-op threads per model; null lets ONNX Runtime choose.</summary>
    public int? IntraOpThreads { get; set; }

    /// <summary>
    /// The most bytes each model's live key/value caches may hold (requests with <c>"cache"</c>); null: ONNX Runtime
    /// engine's default (<c>OnnxEngineOptions.MaxCacheBytes</c>, 4 GiB).
    /// </summary>
    public long? MaxCacheBytes { get; set; }

    /// <summary>
    /// Where ONNX Runtime runs every model: <c>onnx</c> (default, the CPU), <c>onnx-cuda</c> or <c>onnx-tensorrt</c> (the forward
    /// pass on an NVIDIA GPU; the engine's sampler stays on the CPU). The GPU engines need ONNX Runtime's GPU build
    /// (<c>-p:SaberOnnxRuntime=gpu</c>) and NVIDIA's libraries; without them the server does not start, and says what is missing.
    /// </summary>
    public string Engine { get; set; } = "onnx";

    /// <summary>The CUDA device of the GPU engines (default 0).</summary>
    public int Device { get; set; }

    /// <summary><c>onnx-tensorrt</c>'s precision: <c>model</c> (default, the graph's types), <c>fp16</c> or <c>bf16</c>.</summary>
    public string Precision { get; set; } = "model";

    /// <summary>Traces of the chat and completion requests, section <c>Server:Tracing</c>; off unless configured.</summary>
    public SaberServerTracingOptions Tracing { get; set; } = new();

    /// <summary>The ONNX Runtime engine settings of every model, from <see cref="IntraOpThreads"/>, <see cref="MaxCacheBytes"/>, <see cref="Engine"/>, <see cref="Device"/> and <see cref="Precision"/>.</summary>
    public Saber.Onnx.OnnxEngineOptions ToEngineOptions()
    {
        var options = new Saber.Onnx.OnnxEngineOptions
        {
            IntraOpThreads = IntraOpThreads ?? 0,
            Provider = Saber.Onnx.ExecutionProviders.TryFromEngineName(Engine)
                ?? throw new ArgumentException($"{SectionName}:{nameof(Engine)} must be onnx, onnx-cuda or onnx-tensorrt; got '{Engine}'.", nameof(Engine)),
            DeviceId = Device,
            Precision = Saber.Onnx.ExecutionProviders.PrecisionNames.TryGetValue(Precision, out Saber.Onnx.GpuPrecision precision) ? precision
                : throw new ArgumentException($"{SectionName}:{nameof(Precision)} must be model, fp16 or bf16; got '{Precision}'.", nameof(Precision)),
        };
        return MaxCacheBytes is long bytes ? options with { MaxCacheBytes = bytes } : options;
    }

    /// <summary>The shipped model: models/tiny beside the executable, else under the working directory.</summary>
    public static string ShippedModelDirectory()
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "models", "tiny");
        return Directory.Exists(beside) ? beside : Path.Combine(Environment.CurrentDirectory, "models", "tiny");
    }

    internal void Validate()
    {
        if (MaxRequestBodyBytes < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxRequestBodyBytes), MaxRequestBodyBytes, $"{SectionName}:{nameof(MaxRequestBodyBytes)} must be >= 1; got {MaxRequestBodyBytes}.");
        if (MaxPromptTokens < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxPromptTokens), MaxPromptTokens, $"{SectionName}:{nameof(MaxPromptTokens)} must be >= 1; got {MaxPromptTokens}.");
        if (MaxTokens < 1 || MaxTokens > DecodeOptions.MaxGenerationLength)
            throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, $"{SectionName}:{nameof(MaxTokens)} must lie in [1, {DecodeOptions.MaxGenerationLength}]; got {MaxTokens}.");
        if (DefaultMaxTokens < 1 || DefaultMaxTokens > DecodeOptions.MaxGenerationLength)
            throw new ArgumentOutOfRangeException(nameof(DefaultMaxTokens), DefaultMaxTokens, $"{SectionName}:{nameof(DefaultMaxTokens)} must lie in [1, {DecodeOptions.MaxGenerationLength}]; got {DefaultMaxTokens}.");
        if (MaxConcurrentRequests < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxConcurrentRequests), MaxConcurrentRequests, $"{SectionName}:{nameof(MaxConcurrentRequests)} must be >= 1; got {MaxConcurrentRequests}.");
        if (MaxForwardPassesPerToken < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxForwardPassesPerToken), MaxForwardPassesPerToken,
                $"{SectionName}:{nameof(MaxForwardPassesPerToken)} must be >= 1; got {MaxForwardPassesPerToken}.");
        if (!(RequestBodyTimeoutSeconds > 0) || double.IsInfinity(RequestBodyTimeoutSeconds))
            throw new ArgumentOutOfRangeException(nameof(RequestBodyTimeoutSeconds), RequestBodyTimeoutSeconds, $"{SectionName}:{nameof(RequestBodyTimeoutSeconds)} must be a finite number > 0; got {RequestBodyTimeoutSeconds}.");
        if (!(MinRequestBodyBytesPerSecond >= 0) || double.IsInfinity(MinRequestBodyBytesPerSecond))
            throw new ArgumentOutOfRangeException(nameof(MinRequestBodyBytesPerSecond), MinRequestBodyBytesPerSecond, $"{SectionName}:{nameof(MinRequestBodyBytesPerSecond)} must be a finite number >= 0; got {MinRequestBodyBytesPerSecond}.");
        if (ApiKeys.Any(string.IsNullOrWhiteSpace))
            throw new ArgumentException($"{SectionName}:{nameof(ApiKeys)} holds an empty key.", nameof(ApiKeys));
        if (IntraOpThreads is < 1)
            throw new ArgumentOutOfRangeException(nameof(IntraOpThreads), IntraOpThreads, $"{SectionName}:{nameof(IntraOpThreads)} must be >= 1 or unset; got {IntraOpThreads}.");
        if (MaxCacheBytes is < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxCacheBytes), MaxCacheBytes, $"{SectionName}:{nameof(MaxCacheBytes)} must be >= 0 or unset; got {MaxCacheBytes}.");
        if (Device < 0)
            throw new ArgumentOutOfRangeException(nameof(Device), Device, $"{SectionName}:{nameof(Device)} must be >= 0; got {Device}.");
        try
        {
            ToEngineOptions().Validate();
        }
        catch (ArgumentOutOfRangeException e) when (e.ParamName == nameof(Saber.Onnx.OnnxEngineOptions.Precision))
        {
            throw new ArgumentException($"{SectionName}:{nameof(Precision)} {Precision} needs {SectionName}:{nameof(Engine)} onnx-tensorrt; got '{Engine}'.", nameof(Precision), e);
        }
        Tracing.Validate();
        foreach (var (name, directory) in Models)
        {
            if (string.IsNullOrWhiteSpace(name))
                throw new ArgumentException($"{SectionName}:{nameof(Models)} has an empty model id.", nameof(Models));
            if (string.IsNullOrWhiteSpace(directory))
                throw new ArgumentException($"{SectionName}:{nameof(Models)}:{name} names no directory.", nameof(Models));
        }
    }
}
