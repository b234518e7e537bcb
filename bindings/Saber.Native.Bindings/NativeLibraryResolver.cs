using System.Reflection;
using System.Runtime.InteropServices;

namespace Saber.Native;

/// <summary>libsaber_native was not found, or was found but could not be loaded.</summary>
public sealed class SaberNativeLibraryException(string message, Exception? inner = null) : DllNotFoundException(message, inner);

/// <summary>
/// Finds libsaber_native for the generated bindings, in order: the <c>SABER_NATIVE_LIBRARY</c>
/// environment variable (a file path), next to this assembly, then <c>runtimes/&lt;rid&gt;/native</c>
/// (the NuGet layout). Registered by <see cref="SaberNative"/>'s static constructor, before its first call.
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
        return candidates;
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
