using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Xml.Linq;

namespace Saber.Packaging.Tests;

/// <summary>
/// Packs the repository once per test run with tools/pack.sh into a temporary folder (feed, .NET build outputs,
/// NuGet caches, consumer projects, tool path: nothing is written outside it, and it is deleted at the end). The
/// version is the repository's VersionPrefix with a unique pre-release suffix, so no package cache can serve an
/// older build under the same version. The native runtime package is packed from SABER_NATIVE_LIBRARY or
/// build/cuda/native/libsaber_native.so (what tools/pack.sh builds); with neither, it is left out and the tests that
/// need it are ignored with the reason.
/// </summary>
internal sealed class PackagedFeed : IDisposable
{
    public static readonly string[] LibraryIds = ["Saber.Native.Core", "Saber.Native.Onnx", "Saber.Native.Service", "Saber.Native.Extensions.AI", "Saber.Native.Server", "Saber.Native.Bindings", "Saber.Native.Cuda", "Saber.Native.Onnx.Gpu"];
    public const string RuntimeId = "Saber.Native.Runtime.linux-x64";
    public const string ToolId = "Saber.Native.Cli";
    public const string OnnxGpuId = "Saber.Native.Onnx.Gpu";

    /// <summary>ONNX Runtime's packages and the version Directory.Packages.props pins (docs/gpu.md: its GPU providers link CUDA 13).</summary>
    public const string OrtCpuPackage = "Microsoft.ML.OnnxRuntime";
    public const string OrtGpuPackage = "Microsoft.ML.OnnxRuntime.Gpu.Linux";
    public const string OrtVersion = "1.32.0";

    private static readonly Lazy<PackagedFeed> Shared = new(() => new PackagedFeed(), LazyThreadSafetyMode.ExecutionAndPublication);
    private static PackagedFeed? created;

    public string Repository { get; }
    public string Root { get; }
    public string Feed { get; }
    public string Version { get; }
    public string? NativeLibrary { get; }
    public string? NativeSkipReason { get; }
    public TimeSpan PackTime { get; }

    /// <summary>The user's NuGet package folder (NUGET_PACKAGES or ~/.nuget/packages), read as a fallback, never written.</summary>
    public static string UserPackages => Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
        ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    public static PackagedFeed Instance
    {
        get
        {
            created = Shared.Value;
            return created;
        }
    }

    /// <summary>Deletes the temporary folder, if a feed was made in this run.</summary>
    public static void DisposeShared() => created?.Dispose();

    private PackagedFeed()
    {
        Repository = FindRepository();
        Root = Path.Combine(Path.GetTempPath(), "saber-packaging-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Root);
        Feed = Path.Combine(Root, "feed");
        string prefix = XDocument.Load(Path.Combine(Repository, "Directory.Build.props")).Descendants("VersionPrefix").Single().Value;
        Version = $"{prefix}-packagingtest.{DateTime.UtcNow:yyyyMMddHHmmss}";

        string? configured = Environment.GetEnvironmentVariable("SABER_NATIVE_LIBRARY");
        string built = Path.Combine(Repository, "build", "cuda", "native", "libsaber_native.so");
        NativeLibrary = configured is { Length: > 0 } && File.Exists(configured) ? configured : File.Exists(built) ? built : null;
        if (NativeLibrary is not null && !HasCudaDeviceCode(NativeLibrary))
        {
            NativeSkipReason = $"{NativeLibrary} is a host-only build (no .nv_fatbin section); the runtime package holds the CUDA build: run `bash tools/pack.sh`";
            NativeLibrary = null;
        }
        else if (NativeLibrary is null)
            NativeSkipReason = OnPath("nvcc")
                ? "libsaber_native.so is not built: run `bash tools/pack.sh` (it builds build/cuda with nvcc) or set SABER_NATIVE_LIBRARY"
                : "nvcc not found: the native runtime package needs the CUDA toolkit (bash tools/install-cuda-toolkit.sh, then bash tools/pack.sh)";

        var arguments = new List<string> { Path.Combine(Repository, "tools", "pack.sh"), "--output", Feed, "--version", Version,
            "--artifacts-path", Path.Combine(Root, "artifacts") };
        if (NativeLibrary is null) arguments.Add("--no-native");
        else arguments.AddRange(["--native-library", NativeLibrary]);
        // The repository's restore reads the user's package folder too, so that a machine that has ONNX Runtime's GPU
        // package (235 MB) does not download it again into the temporary one for every run.
        if (Directory.Exists(UserPackages)) arguments.AddRange(["--", $"-p:RestoreAdditionalProjectFallbackFolders={UserPackages}"]);
        var clock = Stopwatch.StartNew();
        try
        {
            Run("bash", arguments, Repository, TimeSpan.FromMinutes(8)).ThrowIfFailed();
        }
        catch
        {
            Dispose();
            throw;
        }
        PackTime = clock.Elapsed;
    }

    public string Package(string id, string extension = ".nupkg") => Path.Combine(Feed, $"{id}.{Version}{extension}");

    public static IReadOnlyList<string> Entries(string package)
    {
        using ZipArchive zip = ZipFile.OpenRead(package);
        return zip.Entries.Select(e => e.FullName).ToList();
    }

    public static XElement Nuspec(string package)
    {
        using ZipArchive zip = ZipFile.OpenRead(package);
        ZipArchiveEntry entry = zip.Entries.Single(e => !e.FullName.Contains('/') && e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using Stream stream = entry.Open();
        XElement root = XDocument.Load(stream).Root!;
        return root.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    /// <summary>A nuget.config for consumers: the temporary feed, then the sources this machine's NuGet configuration
    /// enables (the mirror); packages go to a temporary folder, with the user's package folder read as a fallback.</summary>
    public string WriteNuGetConfig(string directory)
    {
        Directory.CreateDirectory(directory);
        var sources = new List<string>();
        ProcessResult list = Run("dotnet", ["nuget", "list", "source", "--format", "short"], Root, TimeSpan.FromMinutes(1));
        list.ThrowIfFailed();
        foreach (string line in list.Output.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            if (line.StartsWith("E ", StringComparison.Ordinal)) sources.Add(line[2..].Trim());
        string userPackages = UserPackages;
        var xml = new StringBuilder();
        xml.AppendLine("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>");
        xml.AppendLine($"  <config><add key=\"globalPackagesFolder\" value=\"{Escape(Path.Combine(Root, "packages"))}\" /></config>");
        xml.AppendLine("  <packageSources>\n    <clear />");
        xml.AppendLine($"    <add key=\"saber-test-feed\" value=\"{Escape(Feed)}\" />");
        for (int i = 0; i < sources.Count; i++) xml.AppendLine($"    <add key=\"machine-{i}\" value=\"{Escape(sources[i])}\" />");
        xml.AppendLine("  </packageSources>");
        if (Directory.Exists(userPackages))
            xml.AppendLine($"  <fallbackPackageFolders>\n    <clear />\n    <add key=\"user\" value=\"{Escape(userPackages)}\" />\n  </fallbackPackageFolders>");
        xml.AppendLine("</configuration>");
        string path = Path.Combine(directory, "nuget.config");
        File.WriteAllText(path, xml.ToString());
        // Stop MSBuild's upward search for Directory.Build.* and Directory.Packages.props at this folder.
        foreach (string name in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
            File.WriteAllText(Path.Combine(directory, name), "<Project />\n");
        return path;
    }

    /// <summary>Runs a process with the output of both streams captured; the environment keeps NuGet's caches and
    /// MSBuild's nodes inside <see cref="Root"/> or gone when it ends, and drops SABER_NATIVE_LIBRARY (packaged
    /// consumers must find the library through the package layout).</summary>
    public ProcessResult Run(string file, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in arguments) start.ArgumentList.Add(a);
        start.Environment.Remove("SABER_NATIVE_LIBRARY");
        start.Environment["NUGET_PACKAGES"] = Path.Combine(Root, "packages");
        start.Environment["NUGET_HTTP_CACHE_PATH"] = Path.Combine(Root, "http-cache");
        start.Environment["NUGET_PLUGINS_CACHE_PATH"] = Path.Combine(Root, "plugins-cache");
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        start.Environment["UseSharedCompilation"] = "false";
        // The test runner's own MSBuild/SDK variables would point child builds at its SDK resolution.
        foreach (string key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) && k != "MSBUILDDISABLENODEREUSE").ToList())
            start.Environment.Remove(key);

        var output = new StringBuilder();
        var error = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output)
            {
                output.AppendLine(e.Data);
                error.AppendLine(e.Data);
            }
        };
        var clock = Stopwatch.StartNew();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            lock (output) return new ProcessResult(file, string.Join(' ', arguments), -1, output + $"\n(killed after {timeout})", clock.Elapsed, error.ToString());
        }
        process.WaitForExit();
        lock (output) return new ProcessResult(file, string.Join(' ', arguments), process.ExitCode, output.ToString(), clock.Elapsed, error.ToString());
    }

    public void Dispose()
    {
        try
        {
            if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // A file still open by a process that outlived its run; the temporary folder is left to the system.
        }
    }

    /// <summary>Whether an ELF shared library carries CUDA device code: its section names include .nv_fatbin.</summary>
    private static bool HasCudaDeviceCode(string library) =>
        File.ReadAllBytes(library).AsSpan().IndexOf(".nv_fatbin"u8) >= 0;

    private static string Escape(string value) => System.Security.SecurityElement.Escape(value);

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Any(d => d.Length > 0 && File.Exists(Path.Combine(d, program)));

    private static string FindRepository()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Saber.Native.sln")) && File.Exists(Path.Combine(d.FullName, "tools", "pack.sh")))
                return d.FullName;
        throw new InvalidOperationException($"No repository (Saber.Native.sln and tools/pack.sh) above {AppContext.BaseDirectory}.");
    }
}

/// <summary>A finished process: <see cref="Output"/> holds both streams interleaved, <see cref="Error"/> stderr alone.</summary>
internal sealed record ProcessResult(string File, string Arguments, int ExitCode, string Output, TimeSpan Elapsed, string Error)
{
    public void ThrowIfFailed()
    {
        if (ExitCode != 0)
            throw new InvalidOperationException($"`{File} {Arguments}` exited {ExitCode} after {Elapsed.TotalSeconds:F0} s:\n{Output}");
    }
}
