// Fuzz and property tests (CsCheck 5) over the .npy reader, the character tokenizer and the saber command line.
//
// Run only these (Release, two cores: about 10 s when every property holds, up to a minute while runs hit the time bound):
//   dotnet test --project tests/Saber.Tests -c Release --filter "FullyQualifiedName~Saber.Tests.Fuzz"
// (add --output detailed to see each property's seed and its table of outcomes when it passes)
// One property:
//   dotnet test --project tests/Saber.Tests -c Release --filter "Name=NpyFilesOpenOrSayWhy"
//
// Seeds. Each property prints "[fuzz] <name>: seed <S>"; S is the seed of its first case (the other cases draw their
// own seeds). When a property fails, CsCheck shrinks the input and names the seed of the smallest failing case:
//   Set seed: "<S>" or -e CsCheck_Seed=<S> to reproduce
// Replay that one case (and nothing else) with:
//   SABER_FUZZ_SEED=<S> dotnet test --project tests/Saber.Tests -c Release --filter "Name=<property>"
// (CsCheck_Seed=<S> works too: that case first, then the usual number of random cases.)
// SABER_FUZZ_SCALE=<x> multiplies the number of cases (e.g. 10 for a longer run); SABER_FUZZ_TIMEOUT_S bounds one
// command-line run (default 20 s; most runs take well under 1 s here, the task model's demo 1.5-3 s alone, but the test
// command runs the test assemblies side by side on 2 cores, and a 2.6 s demo has taken over 10 s there; a runaway run
// takes minutes or never ends).
using System.Runtime.CompilerServices;
using CsCheck;

namespace Saber.Tests.Fuzz;

/// <summary>A property did not hold; thrown instead of NUnit assertions, which would record every shrinking attempt as a failure.</summary>
internal sealed class PropertyViolation(string message) : Exception(message);

internal static class Fuzz
{
    public static string? ReplaySeed => Environment.GetEnvironmentVariable("SABER_FUZZ_SEED") is { Length: > 0 } s ? s.Trim() : null;

    public static double Scale => double.TryParse(Environment.GetEnvironmentVariable("SABER_FUZZ_SCALE"), System.Globalization.CultureInfo.InvariantCulture, out double x) && x > 0 ? x : 1;

    /// <summary>The most one command-line run may take.</summary>
    public static TimeSpan RunBound => TimeSpan.FromSeconds(
        double.TryParse(Environment.GetEnvironmentVariable("SABER_FUZZ_TIMEOUT_S"), System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0 ? s : 20);

    public static void Require(bool condition, string message)
    {
        if (!condition) throw new PropertyViolation(message);
    }

    private static (string Seed, long Cases, TextWriter Out) Plan(string property, long cases)
    {
        string seed = ReplaySeed ?? Check.Seed ?? Gen.Seed.Single();   // Check.Seed: CsCheck_Seed
        long n = ReplaySeed is null ? Math.Max(1, (long)Math.Round(cases * Scale)) : 1;
        TextWriter output = TestContext.Out;   // the test's own writer: CsCheck calls back from pool threads
        output.WriteLine($"[fuzz] {property}: seed {seed}{(ReplaySeed is not null ? " (SABER_FUZZ_SEED: this case only)" : Check.Seed is not null ? " (CsCheck_Seed: this case first)" : "")}, {n} cases");
        return (seed, n, output);
    }

    public static void Sample<T>(Gen<T> gen, Action<T> property, long cases, Func<T, string> print, int threads = -1,
        [CallerMemberName] string name = "")
    {
        var (seed, n, output) = Plan(name, cases);
        gen.Sample(property, writeLine: output.WriteLine, seed: seed, iter: n, threads: threads, print: print);
    }

    /// <summary>Like the above; <paramref name="classify"/> checks a case and names what happened, and CsCheck prints the counts per name.</summary>
    public static void Sample<T>(Gen<T> gen, Func<T, string> classify, long cases, Func<T, string> print, int threads = -1,
        [CallerMemberName] string name = "")
    {
        var (seed, n, output) = Plan(name, cases);
        gen.Sample(classify, writeLine: output.WriteLine, seed: seed, iter: n, threads: threads, print: print);
    }

    public static async Task SampleAsync<T>(Gen<T> gen, Func<T, Task<string>> classify, long cases, Func<T, string> print, int threads = -1,
        [CallerMemberName] string name = "")
    {
        var (seed, n, output) = Plan(name, cases);
        await gen.SampleAsync(classify, writeLine: output.WriteLine, seed: seed, iter: n, threads: threads, print: print);
    }

    public static async Task SampleAsync<T>(Gen<T> gen, Func<T, Task> property, long cases, Func<T, string> print, int threads = -1,
        [CallerMemberName] string name = "")
    {
        var (seed, n, output) = Plan(name, cases);
        await gen.SampleAsync(property, writeLine: output.WriteLine, seed: seed, iter: n, threads: threads, print: print);
    }

    /// <summary>One of the generators (Gen.OneOf's params overloads would otherwise read generators as constants).</summary>
    public static Gen<T> AnyOf<T>(params Gen<T>[] gens) => Gen.OneOf<T>(gens);

    /// <summary>A readable, escaped rendering of a string for failure reports.</summary>
    public static string Show(string? s) =>
        s is null ? "null" : System.Text.Json.JsonSerializer.Serialize(s, new System.Text.Json.JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    /// <summary>Files for one property: a fresh temporary directory, deleted afterwards.</summary>
    public sealed class Scratch : IDisposable
    {
        private int next;
        public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("saber-fuzz-").FullName;

        public string NewPath(string extension) => Path.Combine(Directory, $"{Interlocked.Increment(ref next)}{extension}");

        public void Dispose()
        {
            try
            {
                System.IO.Directory.Delete(Directory, recursive: true);
            }
            catch (IOException)
            {
                // A run left behind after its time bound may still hold a file; the OS cleans the temp folder.
            }
        }
    }
}
