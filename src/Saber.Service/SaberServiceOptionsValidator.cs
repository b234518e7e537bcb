using System.Globalization;
using Microsoft.Extensions.Options;

namespace Saber.Service;

/// <summary>
/// Checks <see cref="SaberServiceOptions"/> with the library's own rules (<see cref="SaberEngineOptions"/> and
/// <see cref="DecodeOptions.Validate"/>) and the strategy names, and reports each failure as
/// <c>"{configuration key} = {value}: {reason}"</c>, e.g. <c>Saber:MaxBatchSize = 0: MaxBatchSize must lie in [1, 1024]; got 0.</c>
/// <c>AddSaber</c> registers it with <c>ValidateOnStart</c>, so a bad value stops the host at start.
/// </summary>
/// <param name="sectionPath">The configuration path the options were bound from (e.g. <c>"Saber"</c>), prefixed to every key; null or empty: none.</param>
public sealed class SaberServiceOptionsValidator(string? sectionPath = null) : IValidateOptions<SaberServiceOptions>
{
    private readonly string prefix = string.IsNullOrEmpty(sectionPath) ? "" : sectionPath + ":";

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, SaberServiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();

        // One engine option at a time (the others at their defaults), so every bad one is reported.
        SaberEngineOptions[] singles =
        [
            new() { Capacity = options.Capacity },
            new() { MaxBatchSize = options.MaxBatchSize },
            new() { MaxRowsPerForward = options.MaxRowsPerForward },
            new() { MaxDegreeOfParallelism = options.MaxDegreeOfParallelism },
        ];
        foreach (SaberEngineOptions single in singles)
            Check(failures, "", single.Validate);

        if (options.Decode is null)
        {
            failures.Add($"{prefix}{nameof(SaberServiceOptions.Decode)} must not be null.");
        }
        else if (options.Decode.Strategy is null)
        {
            failures.Add($"{prefix}Decode:Strategy must not be null.");
        }
        else if (options.Decode.Cache is null)
        {
            failures.Add($"{prefix}Decode:Cache must not be null.");
        }
        else
        {
            // The strategy and the cache are read apart, so that each failure names its own section.
            bool named = true;
            Check(failures, "Decode:Strategy:", () => options.Decode.Strategy.ToStrategy(), () => named = false);
            Check(failures, "Decode:Cache:", () => options.Decode.Cache.ToCacheOptions(), () => named = false);
            if (named)
                Check(failures, "Decode:", options.Decode.ToDecodeOptions().Validate);
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static readonly HashSet<string> DecodeLevel =
        [nameof(DecodeOptions.GenerationLength), nameof(DecodeOptions.BlockLength), nameof(DecodeOptions.Temperature), nameof(DecodeOptions.Strategy)];

    private static readonly HashSet<string> CacheLevel = [nameof(CacheOptions.Policy), nameof(CacheOptions.RefreshEvery), nameof(CacheOptions.OnRemask)];

    private void Check(List<string> failures, string group, Action check, Action? failed = null)
    {
        try
        {
            check();
        }
        catch (ArgumentException e)
        {
            failed?.Invoke();
            string parameter = e.ParamName ?? "";
            // DecodeOptions.Validate names its own properties, the strategy's and the cache's.
            string section = group != "Decode:" || DecodeLevel.Contains(parameter) ? group
                : CacheLevel.Contains(parameter) ? "Decode:Cache:" : "Decode:Strategy:";
            string reason = Reason(e);
            failures.Add(e is ArgumentOutOfRangeException range
                ? $"{prefix}{section}{parameter} = {Format(range.ActualValue)}: {reason}"
                : $"{prefix}{section}{reason}");   // the strategy settings' messages start with "Property = value" or "Property"
        }
    }

    /// <summary>The exception's message without the " (Parameter 'x')" and "Actual value was" lines .NET appends.</summary>
    private static string Reason(ArgumentException e)
    {
        string message = e.Message;
        int cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        int line = message.IndexOfAny(['\r', '\n']);
        return line >= 0 ? message[..line] : message;
    }

    private static string Format(object? value) => value switch
    {
        null => "null",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
