using System.Text.Json;
using Saber.Extensions.AI;
using Saber.Onnx.Tokenizers;
using Saber.Text;

namespace Saber.Onnx;

/// <summary>
/// A model directory: <c>model.onnx</c> and a tokenizer that agree on the vocabulary and the mask id. Either one of the
/// shipped models (a character <c>tokenizer.json</c>) or what <c>saber import</c> wrote from a Hugging Face checkpoint:
/// <c>model.onnx</c> with its external weights, the checkpoint's tokenizer files and <c>saber_model.json</c>.
/// </summary>
public sealed class LocalModel : IDisposable
{
    /// <summary>The manifest <c>saber import</c> writes beside the graph.</summary>
    public const string ManifestFileName = "saber_model.json";

    private readonly ChatTemplateException? chatTemplateError;
    private readonly ChatTemplate? chatTemplate;

    private LocalModel(OnnxDenoiser denoiser, IModelTokenizer tokenizer, string? architecture)
    {
        Denoiser = denoiser;
        Tokenizer = tokenizer;
        Architecture = architecture;
        if (tokenizer is HuggingFaceTokenizer { ChatTemplate: string source })
        {
            try
            {
                chatTemplate = ChatTemplate.Parse(source);
            }
            catch (ChatTemplateException e)
            {
                chatTemplateError = e;   // reported when a chat prompt is asked for: plain generation does not need it
            }
        }
    }

    public OnnxDenoiser Denoiser { get; }
    public IModelTokenizer Tokenizer { get; }

    /// <summary>The imported checkpoint's architecture (<c>llada</c>, <c>dream</c>); null for the shipped models.</summary>
    public string? Architecture { get; }

    /// <summary>Whether the checkpoint carries a chat template (<c>tokenizer_config.json</c>'s <c>chat_template</c>).</summary>
    public bool HasChatTemplate => chatTemplate is not null || chatTemplateError is not null;

    /// <summary>The checkpoint's chat template, or null when it has none.</summary>
    /// <exception cref="ChatTemplateException">The template uses a construct the renderer does not support (named, with its position).</exception>
    public ChatTemplate? ChatTemplate => chatTemplateError is null ? chatTemplate : throw chatTemplateError;

    /// <summary>The tokenizer's beginning-of-text token text (the chat template's <c>bos_token</c>), if any.</summary>
    public string? BosToken => (Tokenizer as HuggingFaceTokenizer)?.BosToken;

    /// <summary>The tokenizer's end-of-text token text (the chat template's <c>eos_token</c>), if any.</summary>
    public string? EosToken => (Tokenizer as HuggingFaceTokenizer)?.EosToken;

    /// <summary>
    /// How a chat becomes this model's prompt: the checkpoint's own chat template (<see cref="JinjaChatPromptTemplate"/>)
    /// when it has one, else <see cref="Saber.Extensions.AI.ChatPromptTemplate.RoleTagged"/> (the shipped models).
    /// </summary>
    /// <exception cref="ChatTemplateException">The checkpoint's template uses a construct the renderer does not support.</exception>
    public IChatPromptTemplate CreatePromptTemplate() =>
        ChatTemplate is { } template
            ? new JinjaChatPromptTemplate(template, BosToken, EosToken)
            : Saber.Extensions.AI.ChatPromptTemplate.RoleTagged;

    /// <summary>The tokenizer of a model directory, without loading the model.</summary>
    /// <exception cref="InvalidDataException">A tokenizer or manifest file is malformed.</exception>
    public static IModelTokenizer OpenTokenizer(string directory) => OpenTokenizer(directory, out _);

    /// <param name="architecture">The manifest's architecture; null for a shipped model (no manifest).</param>
    private static IModelTokenizer OpenTokenizer(string directory, out string? architecture)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"No model directory '{directory}'.");
        string manifest = Path.Combine(directory, ManifestFileName);
        if (!File.Exists(manifest))
        {
            architecture = null;
            return CharacterTokenizer.Load(Path.Combine(directory, "tokenizer.json"));
        }
        (int maskId, int[] endIds, architecture) = ReadManifest(manifest);
        return HuggingFaceTokenizer.Load(directory, new HuggingFaceTokenizerOptions { MaskId = maskId, EndOfTextIds = endIds });
    }

    public static LocalModel Open(string directory, OnnxEngineOptions? options = null, Microsoft.Extensions.Logging.ILogger<OnnxDenoiser>? logger = null)
    {
        IModelTokenizer tokenizer = OpenTokenizer(directory, out string? architecture);
        OnnxDenoiser denoiser = OnnxDenoiser.Load(Path.Combine(directory, ModelFileName), options, logger);
        try
        {
            CheckTokenizer(directory, tokenizer, architecture, denoiser.VocabularySize, denoiser.MaskId);
        }
        catch
        {
            denoiser.Dispose();
            throw;
        }
        return new LocalModel(denoiser, tokenizer, architecture);
    }

    /// <summary>The graph of a model directory.</summary>
    public const string ModelFileName = "model.onnx";

    /// <summary>The tokenizer of a model directory, checked against a model loaded from it by another engine (the GPU one).</summary>
    /// <exception cref="InvalidDataException">The tokenizer disagrees with the model on the vocabulary or the mask id, or a file is malformed.</exception>
    public static IModelTokenizer OpenTokenizerFor(string directory, int vocabulary, int maskId)
    {
        IModelTokenizer tokenizer = OpenTokenizer(directory, out string? architecture);
        CheckTokenizer(directory, tokenizer, architecture, vocabulary, maskId);
        return tokenizer;
    }

    private static void CheckTokenizer(string directory, IModelTokenizer tokenizer, string? architecture, int vocabulary, int maskId)
    {
        // An imported model's logits may be wider than its tokenizer (LLaDA's embedding_size >= vocab_size).
        bool vocabularyFits = architecture is null ? vocabulary == tokenizer.VocabularySize : vocabulary >= tokenizer.VocabularySize;
        if (!vocabularyFits || maskId != tokenizer.MaskId)
            throw new InvalidDataException($"'{directory}': the model has V {vocabulary} and mask id {maskId}, " +
                $"the tokenizer V {tokenizer.VocabularySize} and mask id {tokenizer.MaskId}.");
    }

    /// <summary>What the engines need from <c>saber_model.json</c>: the mask id, the end-of-text ids and the architecture.</summary>
    private static (int MaskId, int[] EndOfTextIds, string Architecture) ReadManifest(string path)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = document.RootElement;
            return (root.GetProperty("mask_id").GetInt32(),
                root.GetProperty("eos_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                root.GetProperty("architecture").GetString() ?? throw new InvalidDataException($"'{path}': architecture is null."));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"'{path}' is not a model manifest (mask_id, eos_ids, architecture): {e.Message}", e);
        }
    }

    public void Dispose() => Denoiser.Dispose();
}
