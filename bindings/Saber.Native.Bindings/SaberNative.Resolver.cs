namespace Saber.Native;

// Hand-written half of the generated partial class: route its LibraryImport calls through the resolver.
public static partial class SaberNative
{
    static SaberNative() => NativeLibraryResolver.Register();
}
