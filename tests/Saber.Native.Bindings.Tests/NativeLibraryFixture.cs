using System.Runtime.InteropServices;
using Saber.Native;

namespace Saber.Native.Bindings.Tests;

/// <summary>
/// Points the resolver at a built libsaber_native: SABER_NATIVE_LIBRARY if set, else the newest
/// build/*/native/libsaber_native.so of this checkout. Tests that need the library are ignored, with
/// the reason, when none is built.
/// </summary>
internal static class NativeLibraryFixture
{
    private static readonly Lazy<string?> Library = new(Locate);

    public static void Require()
    {
        if (Library.Value is null)
            Assert.Ignore("libsaber_native.so is not built: run `cmake -S . -B build && cmake --build build` or set SABER_NATIVE_LIBRARY");
        NativeLibraryResolver.EnsureLoaded();
    }

    public static unsafe string LastError() => Marshal.PtrToStringUTF8((nint)SaberNative.LastError()) ?? "";

    private static string? Locate()
    {
        if (Environment.GetEnvironmentVariable(NativeLibraryResolver.EnvironmentVariable) is { Length: > 0 } configured)
            return configured;
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (!File.Exists(Path.Combine(d.FullName, "Saber.Native.sln"))) continue;
            string build = Path.Combine(d.FullName, "build");
            string? found = Directory.Exists(build)
                ? Directory.EnumerateFiles(build, "libsaber_native.so", SearchOption.AllDirectories).OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault()
                : null;
            if (found is not null) Environment.SetEnvironmentVariable(NativeLibraryResolver.EnvironmentVariable, found);
            return found;
        }
        return null;
    }
}
