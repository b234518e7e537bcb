using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Saber.Server.Tests.Hostile;

/// <summary>Every log entry of a server (Debug and up, whatever its other providers' levels), to assert what a bad request leaves in the log.</summary>
internal sealed class CapturedLogs : ILoggerProvider
{
    private readonly List<Entry> entries = [];

    public sealed record Entry(LogLevel Level, string Category, string Message, Exception? Exception)
    {
        public override string ToString() => $"{Level} {Category}: {Message}{(Exception is null ? "" : " [" + Exception.GetType().Name + "]")}";
    }

    /// <summary>Adds the capture to <paramref name="builder"/>'s logging, below the fixture's Warning minimum.</summary>
    public void AddTo(WebApplicationBuilder builder)
    {
        builder.Logging.AddProvider(this);
        builder.Logging.AddFilter<CapturedLogs>(null, LogLevel.Debug);
    }

    /// <summary>Forgets what is logged so far (the start's lines), so that what follows is the attack's.</summary>
    public void Clear()
    {
        lock (entries) entries.Clear();
    }

    public IReadOnlyList<Entry> Entries
    {
        get
        {
            lock (entries) return [.. entries];
        }
    }

    /// <summary>
    /// Asserts what a client's fault may leave: nothing at Warning or above, no exception (stack trace) at Information or
    /// above, and at most <paramref name="saberLines"/> Information lines of the server's own (the hosting's per-request
    /// "Request starting/finished" lines aside).
    /// </summary>
    public void AssertQuietAboutClientFaults(int saberLines = 1)
    {
        IReadOnlyList<Entry> all = Entries;
        string listing = string.Join("\n", all);
        Assert.That(all.Where(e => e.Level >= LogLevel.Warning), Is.Empty, listing);
        Assert.That(all.Where(e => e.Level >= LogLevel.Information && e.Exception is not null), Is.Empty, listing);
        Assert.That(all.Where(e => e.Level >= LogLevel.Information && e.Category.StartsWith("Saber", StringComparison.Ordinal)).Count(),
            Is.LessThanOrEqualTo(saberLines), listing);
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturedLogs owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (owner.entries) owner.entries.Add(new Entry(logLevel, category, formatter(state, exception), exception));
        }
    }
}
