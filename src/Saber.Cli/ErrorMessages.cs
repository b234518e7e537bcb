namespace Saber.Cli;

/// <summary>How the CLI words a library error: the library's own sentence, led by the option it came from.</summary>
internal static class ErrorMessages
{
    /// <summary>Library parameter names (options records, engine options, replay arguments) and the options that set them.</summary>
    private static readonly Dictionary<string, string> Options = new(StringComparer.Ordinal)
    {
        ["GenerationLength"] = "--gen-length",
        ["generationLength"] = "--gen-length",
        ["BlockLength"] = "--block-length",
        ["Temperature"] = "--temperature",
        ["MinTokensPerStep"] = "--min-tokens",
        ["RemaskDivisor"] = "--remask-divisor",
        ["FixedThreshold"] = "--fixed-threshold",
        ["Steps"] = "--steps",
        ["Threshold"] = "--threshold",
        ["Factor"] = "--factor",
        ["maskId"] = "--mask-id",
        ["IntraOpThreads"] = "--threads",
    };

    /// <summary>
    /// The message without .NET's " (Parameter 'x')" and "Actual value was v." additions (our messages name the
    /// value already), prefixed by the option that set the parameter where there is one.
    /// </summary>
    public static string Describe(Exception e)
    {
        if (e is not ArgumentException argument) return e.Message;
        // The additions are exactly what the same exception type adds to an empty message.
        string suffix = argument is ArgumentOutOfRangeException range
            ? new ArgumentOutOfRangeException(range.ParamName, range.ActualValue, "").Message
            : new ArgumentException("", argument.ParamName).Message;
        string message = suffix.Length > 0 && argument.Message.EndsWith(suffix, StringComparison.Ordinal)
            ? argument.Message[..^suffix.Length]
            : argument.Message;
        return argument.ParamName is { } name && Options.TryGetValue(name, out string? option) ? $"{option}: {message}" : message;
    }
}
