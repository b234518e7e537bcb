using System.Runtime.InteropServices;
using Saber.Native;

namespace Saber.Native.Bindings.Tests;

/// <summary>The generated bindings against the native library: struct layouts, ABI version, errors, Philox.</summary>
public unsafe class BindingTests
{
    [SetUp]
    public void RequireLibrary() => NativeLibraryFixture.Require();

    private static readonly Dictionary<string, Type> Structs = new()
    {
        ["saber_decode_options"] = typeof(SaberDecodeOptions),
        ["saber_decode_status"] = typeof(SaberDecodeStatus),
        ["saber_trace_step"] = typeof(SaberTraceStep),
        ["saber_struct_layout"] = typeof(SaberStructLayout),
    };

    [Test]
    public void StructLayoutsMatchTheNativeLibrary()
    {
        SaberStructLayout* layouts;
        int count;
        Assert.That(SaberNative.StructLayouts(&layouts, &count), Is.EqualTo(SaberStatus.Ok));
        Assert.That(count, Is.EqualTo(Structs.Count), "every ABI struct has a generated counterpart");
        for (int i = 0; i < count; i++)
        {
            SaberStructLayout layout = layouts[i];
            string name = Marshal.PtrToStringUTF8((nint)layout.Name)!;
            Assert.That(Structs.ContainsKey(name), Is.True, $"no generated struct for {name}");
            Type type = Structs[name];
            Assert.That(Marshal.SizeOf(type), Is.EqualTo((int)layout.Size), $"sizeof({name})");
            Assert.That(type.GetFields().Length, Is.EqualTo((int)layout.FieldCount), $"fields of {name}");
            for (int f = 0; f < layout.FieldCount; f++)
            {
                string field = Marshal.PtrToStringUTF8((nint)layout.FieldNames[f])!;
                string managed = string.Concat(field.Split('_').Select(p => char.ToUpperInvariant(p[0]) + p[1..]));
                Assert.That((int)Marshal.OffsetOf(type, managed), Is.EqualTo((int)layout.FieldOffsets[f]), $"offsetof({name}, {field})");
            }
        }
    }

    [Test]
    public void AbiVersionMatchesTheGeneratedConstant() =>
        Assert.That(SaberNative.AbiVersion(), Is.EqualTo(SaberNativeConstants.AbiVersion));

    [Test]
    public void ValidationErrorsCarryTheNativeMessage()
    {
        var options = new SaberDecodeOptions { GenerationLength = 8, BlockLength = 3, Strategy = (int)SaberStrategy.Saber, MinTokensPerStep = 2, RemaskDivisor = 8 };
        Assert.That(SaberNative.ValidateOptions(&options, 100, 99), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Does.Contain("block_length K must be > 0 and divide G=8; got 3"));
        options.BlockLength = 4;
        Assert.That(SaberNative.ValidateOptions(&options, 100, 99), Is.EqualTo(SaberStatus.Ok));
        Assert.That(NativeLibraryFixture.LastError(), Is.Empty);
    }

    [Test]
    public void FactorIsValidatedByTheNativeLibrary()
    {
        // The factor field sits in what was padding before seed: set through the generated struct, the library reads it.
        var options = new SaberDecodeOptions { GenerationLength = 8, BlockLength = 4, Strategy = (int)SaberStrategy.Factor, Factor = 0f, Seed = ulong.MaxValue };
        Assert.That(SaberNative.ValidateOptions(&options, 100, 99), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Does.Contain("factor must be finite and > 0; got 0"));
        options.Factor = float.NaN;
        Assert.That(SaberNative.ValidateOptions(&options, 100, 99), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Does.Match("factor must be finite and > 0; got -?nan"));   // .NET's NaN has the sign bit
        options.Factor = 1f;
        Assert.That(SaberNative.ValidateOptions(&options, 100, 99), Is.EqualTo(SaberStatus.Ok));
    }

    [Test]
    public void NativeAndManagedPhiloxDrawTheSameBits()
    {
        // The C++ draw (native/src/philox.h) against the C# one (src/Saber/Philox.cs): one layout, two implementations.
        var rng = new Random(3);
        for (int i = 0; i < 5000; i++)
        {
            ulong seed = (ulong)rng.NextInt64();
            int step = rng.Next(1, 1000), sequence = rng.Next(64), position = rng.Next(8192), v = rng.Next(200000);
            Assert.That(SaberNative.RandomBits(seed, step, sequence, position, v), Is.EqualTo(RandomLayout.Bits(seed, step, sequence, position, v)));
        }
    }

    [Test]
    public void WidenIdsChecksItsArgumentsBeforeAnyDeviceCall()
    {
        // saber_context_widen_ids validates before it touches the context (null here), so no GPU is needed.
        long* storage = stackalloc long[8];
        if (SaberNative.BuiltWithCuda() == 0)
        {
            Assert.That(SaberNative.ContextWidenIds(0, storage, storage + 4, 2), Is.EqualTo(SaberStatus.ErrorNoDevice));
            Assert.That(NativeLibraryFixture.LastError(), Does.Contain("built without CUDA"));
            return;
        }
        Assert.That(SaberNative.ContextWidenIds(0, storage, storage + 4, -1), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Is.EqualTo("saber_context_widen_ids: count must be >= 0; got -1"));
        Assert.That(SaberNative.ContextWidenIds(0, null, storage + 4, 2), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Is.EqualTo("saber_context_widen_ids: device_source is null with count 2"));
        Assert.That(SaberNative.ContextWidenIds(0, storage, storage + 1, 4), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Does.Contain("overlap"));
        Assert.That(SaberNative.ContextWidenIds(0, storage, storage + 4, 2), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Is.EqualTo("saber_context_widen_ids: context is null"));
    }

    [Test]
    public void NullHandlesAreErrorsNotCrashes()
    {
        SaberDecodeStatus status;
        Assert.That(SaberNative.DecodePoll(0, &status), Is.Not.EqualTo(SaberStatus.Ok));
        Assert.That(NativeLibraryFixture.LastError(), Is.Not.Empty);
        Assert.That(SaberNative.DecodeDestroy(0), Is.EqualTo(SaberStatus.Ok));
    }
}

public class ResolverTests
{
    [Test]
    public void CandidatesIncludeThePortableRuntimesFolderThatNuGetFillsForRidlessBuilds()
    {
        // A consuming project built without a RID gets Saber.Native.Runtime.linux-x64's library in
        // bin/<config>/<tfm>/runtimes/linux-x64/native, next to Saber.Native.Bindings.dll's folder.
        string here = Path.GetDirectoryName(typeof(NativeLibraryResolver).Assembly.Location)!;
        string? portable = NativeLibraryResolver.PortableRuntimeIdentifier();
        Assert.That(portable, Is.Not.Null);
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 && !RuntimeInformation.RuntimeIdentifier.StartsWith("linux-musl-"))
            Assert.That(portable, Is.EqualTo("linux-x64"));
        string file = OperatingSystem.IsWindows() ? "saber_native.dll" : OperatingSystem.IsMacOS() ? "libsaber_native.dylib" : "libsaber_native.so";
        Assert.That(NativeLibraryResolver.Candidates(), Has.Member(Path.Combine(here, "runtimes", portable!, "native", file)));
    }

    [Test]
    public void CandidatesAreTheEnvironmentVariableThenNextToTheAssemblyThenRuntimes()
    {
        string? saved = Environment.GetEnvironmentVariable(NativeLibraryResolver.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(NativeLibraryResolver.EnvironmentVariable, "/opt/custom/libsaber_native.so");
            IReadOnlyList<string> candidates = NativeLibraryResolver.Candidates();
            Assert.That(candidates[0], Is.EqualTo("/opt/custom/libsaber_native.so"));
            string here = Path.GetDirectoryName(typeof(NativeLibraryResolver).Assembly.Location)!;
            Assert.That(candidates[1], Is.EqualTo(Path.Combine(here, "libsaber_native.so")));
            Assert.That(candidates[2], Is.EqualTo(Path.Combine(here, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", "libsaber_native.so")));
        }
        finally
        {
            Environment.SetEnvironmentVariable(NativeLibraryResolver.EnvironmentVariable, saved);
        }
    }
}
