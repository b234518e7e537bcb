namespace Saber.Text;

/// <summary>
/// A chat template that uses something outside the supported Jinja subset, is malformed, fails while rendering, or
/// calls <c>raise_exception</c>. <see cref="Exception.Message"/> names the construct and its position.
/// </summary>
public sealed class ChatTemplateException : Exception
{
    public ChatTemplateException(string message, int line, int column, string? raisedMessage = null)
        : base(raisedMessage is null
            ? $"chat template: {message} at line {line}, column {column}"
            : $"chat template: raise_exception at line {line}, column {column}: {raisedMessage}")
    {
        Line = line;
        Column = column;
        RaisedMessage = raisedMessage;
    }

    /// <summary>The 1-based line of the construct in the template source.</summary>
    public int Line { get; }

    /// <summary>The 1-based column of the construct in the template source.</summary>
    public int Column { get; }

    /// <summary>The template's own message when it called <c>raise_exception(...)</c>; null for every other error.</summary>
    public string? RaisedMessage { get; }
}
