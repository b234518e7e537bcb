using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Saber;
using Saber.Extensions.AI;
using Saber.Onnx;
using Saber.Service;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers a model directory as a Microsoft.Extensions.AI <see cref="IChatClient"/>.</summary>
public static class SaberChatClientServiceCollectionExtensions
{
    /// <summary>
    /// Registers the model in <paramref name="modelDirectory"/> (<see cref="LocalModel.Open"/>: <c>model.onnx</c> and its
    /// tokenizer) as a singleton <see cref="IChatClient"/>: a <see cref="SaberChatClient"/> over a <see cref="SaberEngine"/>
    /// (<c>AddSaber()</c>) with the model's own tokenizer, prompt template (<see cref="LocalModel.CreatePromptTemplate"/>)
    /// and longest canvas (<see cref="SaberChatClientOptions.MaxSequenceLength"/> from the model), and the directory's
    /// name as the model id.
    /// </summary>
    /// <param name="modelDirectory">The model directory: a shipped model or what <c>saber import</c> wrote.</param>
    /// <param name="configure">
    /// Changes the client's settings, given those read from the model, e.g.
    /// <c>o =&gt; o with { DefaultMaxOutputTokens = 128 }</c>; null keeps them.
    /// </param>
    /// <param name="engineOptions">Where and how ONNX Runtime runs the model (the CPU by default; <see cref="OnnxEngineOptions"/>).</param>
    /// <returns>
    /// The builder of the registered client's pipeline, as Microsoft.Extensions.AI's <c>AddChatClient</c> returns it:
    /// add <c>.UseOpenTelemetry()</c>, <c>.UseLogging()</c>, ... to it.
    /// </returns>
    /// <remarks>
    /// Everything is created at the client's first resolution and belongs to the container: the model
    /// (<see cref="LocalModel"/>, also registered, with its denoiser as the <see cref="IDenoiser"/>), the engine and the
    /// clients are disposed with it. The engine is <see cref="IAsyncDisposable"/> only, so dispose a hand-built
    /// <c>ServiceProvider</c> with <c>DisposeAsync</c> (the generic host does). The engine's settings are
    /// <see cref="SaberServiceOptions"/>': the defaults, or call <c>AddSaber(configuration.GetSection("Saber"))</c>
    /// (without a denoiser factory) too. One model per container: the plain <see cref="SaberChatClient"/> and the model
    /// are registered as well.
    /// </remarks>
    /// <exception cref="DirectoryNotFoundException"><paramref name="modelDirectory"/> does not exist (named).</exception>
    /// <exception cref="InvalidOperationException">The container already has a model or a denoiser.</exception>
    public static ChatClientBuilder AddSaberChatClient(this IServiceCollection services, string modelDirectory,
        Func<SaberChatClientOptions, SaberChatClientOptions>? configure = null, OnnxEngineOptions? engineOptions = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        // Checked now, not at the first resolution, so that a wrong path fails where it is written.
        string directory = Path.GetFullPath(modelDirectory);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"AddSaberChatClient: no model directory '{modelDirectory}' (full path '{directory}').");
        // The engine decodes the registered IDenoiser: another one would not match this model's tokenizer.
        if (services.Any(d => d.ServiceType == typeof(LocalModel) || d.ServiceType == typeof(IDenoiser)))
            throw new InvalidOperationException(
                $"AddSaberChatClient('{modelDirectory}'): the container already has a {nameof(LocalModel)} or an {nameof(IDenoiser)}; it serves one model, its own.");

        services.AddSingleton(sp => LocalModel.Open(directory, engineOptions, sp.GetService<ILogger<OnnxDenoiser>>()));
        // The container disposes this too (disposing an OnnxDenoiser twice is harmless): the engine does not own it.
        services.AddSingleton<IDenoiser>(sp => sp.GetRequiredService<LocalModel>().Denoiser);
        services.AddSaber();
        services.AddSingleton(sp =>
        {
            LocalModel model = sp.GetRequiredService<LocalModel>();
            var options = new SaberChatClientOptions
            {
                ModelId = Path.GetFileName(Path.TrimEndingDirectorySeparator(directory)),
                MaxSequenceLength = model.Denoiser.MaxSequenceLength,
                PromptTemplate = model.CreatePromptTemplate(),
            };
            if (configure is not null)
                options = configure(options) ?? throw new InvalidOperationException("The configure function given to AddSaberChatClient returned null.");
            return new SaberChatClient(sp.GetRequiredService<SaberEngine>(), model.Tokenizer, options);
        });
        return services.AddChatClient(sp => sp.GetRequiredService<SaberChatClient>());
    }
}
