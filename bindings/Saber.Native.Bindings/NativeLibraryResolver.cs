using System.Reflection;
using System.Runtime.InteropServices;

namespace Saber.Native;

/// <summary>libsaber_native was not found, or was found but could not be loaded.</summary>
public sealed class SaberNativeLibraryException(string message, Exception? inner = null) : DllNotFoundException(message, inner);

/// <summary>
/// Finds libsaber_native for the generated bindings, in order: the <c>SABER_NATIVE_LIBRARY</c>
/// environment variable (a file path), next to this assembly, then <c>runtimes/&lt;rid&gt;/native</c>
/// (the NuGet layout; the process's runtime identifier, then the portable one such as linux-x64).
/// Registered by <see cref="SaberNative"/>'s static constructor, before its first call.
/// </summary>
public static class NativeLibraryResolver
{
    public const string EnvironmentVariable = "SABER_NATIVE_LIBRARY";

    private static readonly Lazy<nint> Handle = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    internal static void Register() => NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);

    /// <summary>The paths tried, in order, for the current process.</summary>
    public static IReadOnlyList<string> Candidates()
    {
        string file = OperatingSystem.IsWindows() ? "saber_native.dll" : OperatingSystem.IsMacOS() ? "libsaber_native.dylib" : "libsaber_native.so";
        string directory = Path.GetDirectoryName(typeof(NativeLibraryResolver).Assembly.Location) is { Length: > 0 } d ? d : AppContext.BaseDirectory;
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } configured) candidates.Add(configured);
        candidates.Add(Path.Combine(directory, file));
        candidates.Add(Path.Combine(directory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", file));
        // NuGet copies a package's runtimes/linux-x64/native into bin/.../runtimes/linux-x64/native; a runtime built
        // for a distribution reports its own identifier (e.g. ubuntu.24.04-x64), so the portable one is tried too.
        if (PortableRuntimeIdentifier() is { } portable && portable != RuntimeInformation.RuntimeIdentifier)
            candidates.Add(Path.Combine(directory, "runtimes", portable, "native", file));
        return candidates;
    }

    /// <summary>The portable runtime identifier of this process (linux-x64, osx-arm64, win-x64, ...), the one NuGet packages use.</summary>
    public static string? PortableRuntimeIdentifier()
    {
        string? os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : OperatingSystem.IsLinux() ? "linux" : null;
        string? architecture = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => "x64",
            Architecture.Arm64 => "arm64",
            Architecture.X86 => "x86",
            Architecture.Arm => "arm",
            _ => null,
        };
        if (os is null || architecture is null) return null;
        // musl-based Linux (Alpine) has packages of its own: linux-musl-x64.
        if (os == "linux" && RuntimeInformation.RuntimeIdentifier.StartsWith("linux-musl-", StringComparison.Ordinal)) os = "linux-musl";
        return $"{os}-{architecture}";
    }

    /// <summary>Loads the library now (or returns the loaded handle); throws <see cref="SaberNativeLibraryException"/> if it cannot.</summary>
    public static nint EnsureLoaded() => Handle.Value;

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) =>
        libraryName == SaberNative.LibraryName ? Handle.Value : 0;

    private static nint Load()
    {
        var tried = new List<string>();
        foreach (string path in Candidates())
        {
            if (!File.Exists(path))
            {
                tried.Add($"{path} (not found)");
                continue;
            }
            try
            {
                return NativeLibrary.Load(path);
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                throw new SaberNativeLibraryException($"{path} exists but could not be loaded: {e.Message}", e);
            }
        }
        throw new SaberNativeLibraryException(
            "libsaber_native was not found. Tried: " + string.Join("; ", tried) + ". Build it with " +
            "`cmake -S . -B build -DSABER_CUDA=ON && cmake --build build` and set " + EnvironmentVariable +
            " to build/native/libsaber_native.so (or copy it next to the application).");
    }
}
