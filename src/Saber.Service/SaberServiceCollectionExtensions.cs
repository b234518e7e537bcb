using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Saber;
using Saber.Service;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers a <see cref="SaberEngine"/> in a service collection.</summary>
public static class SaberServiceCollectionExtensions
{
    /// <summary>
    /// Registers a singleton <see cref="SaberEngine"/> configured from <paramref name="configuration"/> (usually
    /// <c>configuration.GetSection("Saber")</c>; see <see cref="SaberServiceOptions"/> for the keys), the default
    /// <see cref="DecodeOptions"/> of that configuration as a singleton, and startup validation of the options.
    /// </summary>
    /// <param name="configuration">The section to bind; a key it holds that <see cref="SaberServiceOptions"/> does not know fails the binding.</param>
    /// <param name="denoiserFactory">
    /// Creates the model the engine serves (e.g. <c>sp =&gt; OnnxDenoiser.Load(path)</c>); the engine owns and disposes it.
    /// Null: the engine serves the <see cref="IDenoiser"/> registered in the container, which the container owns.
    /// </param>
    /// <remarks>
    /// The engine is created at its first resolution and disposed with the container (it is <see cref="IAsyncDisposable"/>
    /// only: dispose the provider with <c>DisposeAsync</c>, as the generic host does). It reports metrics to the
    /// <see cref="IMeterFactory"/> when one is registered (the generic host registers one), else to a process-wide meter,
    /// and logs through <see cref="ILogger{SaberEngine}"/> when logging is registered. Calling <c>AddSaber</c> again adds
    /// no second engine.
    /// </remarks>
    public static IServiceCollection AddSaber(this IServiceCollection services, IConfiguration configuration, Func<IServiceProvider, IDenoiser>? denoiserFactory = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<SaberServiceOptions>().Bind(configuration, binder => binder.ErrorOnUnknownConfiguration = true);
        return AddCore(services, (configuration as IConfigurationSection)?.Path, denoiserFactory);
    }

    /// <summary>
    /// Registers a singleton <see cref="SaberEngine"/> with the <see cref="SaberServiceOptions"/> configured elsewhere
    /// (<c>services.Configure&lt;SaberServiceOptions&gt;(...)</c>) or the defaults; otherwise as
    /// <see cref="AddSaber(IServiceCollection, IConfiguration, Func{IServiceProvider, IDenoiser}?)"/>.
    /// </summary>
    public static IServiceCollection AddSaber(this IServiceCollection services, Func<IServiceProvider, IDenoiser>? denoiserFactory = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        return AddCore(services, null, denoiserFactory);
    }

    private static IServiceCollection AddCore(IServiceCollection services, string? sectionPath, Func<IServiceProvider, IDenoiser>? denoiserFactory)
    {
        services.AddOptions<SaberServiceOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<SaberServiceOptions>>(new SaberServiceOptionsValidator(sectionPath)));
        services.TryAddSingleton(sp => sp.GetRequiredService<IOptions<SaberServiceOptions>>().Value.Decode.ToDecodeOptions());
        services.TryAddSingleton(sp =>
        {
            SaberServiceOptions settings = sp.GetRequiredService<IOptions<SaberServiceOptions>>().Value;
            if (denoiserFactory is null)
                return CreateEngine(sp, sp.GetRequiredService<IDenoiser>(), settings.ToEngineOptions(disposeDenoiser: false));
            IDenoiser denoiser = denoiserFactory(sp) ?? throw new InvalidOperationException("The denoiser factory given to AddSaber returned null.");
            try
            {
                return CreateEngine(sp, denoiser, settings.ToEngineOptions(disposeDenoiser: true));
            }
            catch
            {
                (denoiser as IDisposable)?.Dispose();
                throw;
            }
        });
        return services;
    }

    private static SaberEngine CreateEngine(IServiceProvider sp, IDenoiser denoiser, SaberEngineOptions options) =>
        new(denoiser, options, sp.GetService<ILogger<SaberEngine>>(), sp.GetService<IMeterFactory>());
}
