using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Saber.Packaging.Tests;

[SetUpFixture]
public sealed class PackagingRun
{
    [OneTimeTearDown]
    public void DeleteTemporaryFolder() => PackagedFeed.DisposeShared();
}

/// <summary>What tools/pack.sh puts into the packages: ids, version, metadata, symbols, the native library, the tool's model.</summary>
public class PackageContentTests
{
    private static PackagedFeed Feed => PackagedFeed.Instance;

    [OneTimeSetUp]
    public void Pack() => TestContext.Progress.WriteLine($"tools/pack.sh: {Feed.PackTime.TotalSeconds:F0} s, version {Feed.Version}, feed {Feed.Feed}");

    [TestCaseSource(typeof(PackagedFeed), nameof(PackagedFeed.LibraryIds))]
    [TestCase(PackagedFeed.ToolId)]
    public void ManagedPackagesCarryTheirMetadataReadmeAndSymbols(string id)
    {
        string package = Feed.Package(id);
        Assert.That(package, Does.Exist);
        XElement metadata = PackagedFeed.Nuspec(package);
        string Value(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
        Assert.Multiple(() =>
        {
            Assert.That(Value("id"), Is.EqualTo(id));
            Assert.That(Value("version"), Is.EqualTo(Feed.Version));
            Assert.That(Value("authors"), Is.Not.Empty);
            Assert.That(Value("description"), Has.Length.GreaterThan(40));
            Assert.That(Value("readme"), Is.EqualTo("README.md"));
            Assert.That(PackagedFeed.Entries(package), Has.Member("README.md"));
            // MIT, as the repository's LICENSE says, as an SPDX expression (Directory.Build.props).
            XElement? license = metadata.Elements().SingleOrDefault(e => e.Name.LocalName == "license");
            Assert.That(license?.Attribute("type")?.Value, Is.EqualTo("expression"));
            Assert.That(license?.Value, Is.EqualTo("MIT"));
            XElement? repository = metadata.Elements().SingleOrDefault(e => e.Name.LocalName == "repository");
            Assert.That(repository?.Attribute("type")?.Value, Is.EqualTo("git"));
            Assert.That(repository?.Attribute("commit")?.Value, Does.Match("^[0-9a-f]{40}$"));
        });
        string symbols = Feed.Package(id, ".snupkg");
        Assert.That(symbols, Does.Exist);
        Assert.That(PackagedFeed.Entries(symbols), Has.Some.EndsWith(".pdb"));
    }

    [TestCase("Saber.Native.Core", "Saber.Core")]
    [TestCase("Saber.Native.Onnx", "Saber.Onnx")]
    [TestCase("Saber.Native.Service", "Saber.Service")]
    [TestCase("Saber.Native.Extensions.AI", "Saber.Extensions.AI")]
    [TestCase("Saber.Native.Server", "Saber.Server")]
    [TestCase("Saber.Native.Bindings", "Saber.Native.Bindings")]
    [TestCase("Saber.Native.Cuda", "Saber.Cuda")]
    [TestCase(PackagedFeed.OnnxGpuId, "Saber.Onnx.Gpu")]
    public void LibraryPackagesHoldTheAssemblyAndItsDocumentation(string id, string assembly)
    {
        IReadOnlyList<string> entries = PackagedFeed.Entries(Feed.Package(id));
        Assert.That(entries, Has.Member($"lib/net10.0/{assembly}.dll"));
        Assert.That(entries, Has.Member($"lib/net10.0/{assembly}.xml"));
        Assert.That(entries, Has.None.EndsWith(".pdb"), "symbols belong in the .snupkg");
    }

    [Test]
    public void TheCudaPackageDependsOnTheNativeRuntimePackage()
    {
        XElement metadata = PackagedFeed.Nuspec(Feed.Package("Saber.Native.Cuda"));
        var dependencies = metadata.Descendants().Where(e => e.Name.LocalName == "dependency")
            .ToDictionary(e => e.Attribute("id")!.Value, e => e.Attribute("version")!.Value);
        Assert.That(dependencies, Does.ContainKey(PackagedFeed.RuntimeId));
        Assert.That(dependencies[PackagedFeed.RuntimeId], Is.EqualTo(Feed.Version));
        Assert.That(dependencies, Does.ContainKey("Saber.Native.Bindings"));
        Assert.That(dependencies, Does.ContainKey("Saber.Native.Core"));
    }

    [Test]
    public void TheOnnxGpuPackageDependsOnOnnxRuntimesGpuBuildAndCarriesTheTargetsThatKeepIt()
    {
        string package = Feed.Package(PackagedFeed.OnnxGpuId);
        XElement metadata = PackagedFeed.Nuspec(package);
        var dependencies = metadata.Descendants().Where(e => e.Name.LocalName == "dependency")
            .ToDictionary(e => e.Attribute("id")!.Value, e => e.Attribute("version")!.Value);
        Assert.Multiple(() =>
        {
            Assert.That(dependencies, Does.ContainKey("Saber.Native.Onnx").WithValue(Feed.Version));
            Assert.That(dependencies, Does.ContainKey("Saber.Native.Cuda").WithValue(Feed.Version));
            Assert.That(dependencies, Does.ContainKey(PackagedFeed.OrtGpuPackage).WithValue(PackagedFeed.OrtVersion));
        });
        // The targets that drop the CPU build's native files when a project gets both (buildTransitive: also for a
        // project that gets this package through another), byte for byte the repository's.
        const string targets = "buildTransitive/Saber.Native.Onnx.Gpu.targets";
        Assert.That(PackagedFeed.Entries(package), Has.Member(targets));
        using var zip = System.IO.Compression.ZipFile.OpenRead(package);
        using var packed = new StreamReader(zip.GetEntry(targets)!.Open());
        Assert.That(packed.ReadToEnd(), Is.EqualTo(File.ReadAllText(Path.Combine(Feed.Repository, "src", "Saber.Onnx.Gpu", "build", "OnnxRuntimeNative.targets"))));
    }

    [Test]
    public void TheRuntimePackageHoldsOnlyTheNativeLibrary()
    {
        if (Feed.NativeSkipReason is { } reason) Assert.Ignore(reason);
        string package = Feed.Package(PackagedFeed.RuntimeId);
        IReadOnlyList<string> entries = PackagedFeed.Entries(package);
        Assert.That(entries, Has.Member("runtimes/linux-x64/native/libsaber_native.so"));
        Assert.That(entries, Has.None.StartsWith("lib/"));
        XElement metadata = PackagedFeed.Nuspec(package);
        Assert.That(metadata.Elements().Single(e => e.Name.LocalName == "readme").Value, Is.EqualTo("README.md"));
        XElement license = metadata.Elements().Single(e => e.Name.LocalName == "license");
        Assert.That((license.Attribute("type")?.Value, license.Value), Is.EqualTo(("expression", "MIT")));
        using var zip = System.IO.Compression.ZipFile.OpenRead(package);
        Assert.That(zip.GetEntry("runtimes/linux-x64/native/libsaber_native.so")!.Length, Is.EqualTo(new FileInfo(Feed.NativeLibrary!).Length));
    }

    [Test]
    public void TheToolPackageHoldsTheSaberCommandAndTheShippedModels()
    {
        string package = Feed.Package(PackagedFeed.ToolId);
        IReadOnlyList<string> entries = PackagedFeed.Entries(package);
        Assert.That(entries, Has.Member("tools/net10.0/any/saber.dll"));
        Assert.That(entries, Has.Member("tools/net10.0/any/models/tiny/model.onnx"));
        Assert.That(entries, Has.Member("tools/net10.0/any/models/tiny/tokenizer.json"));
        Assert.That(entries, Has.Member("tools/net10.0/any/models/tiny/model.cache.onnx"), "the cache graph: --cache prefix|dual works from the tool");
        foreach (string model in new[] { "sudoku", "addition" })
            foreach (string file in new[] { "model.onnx", "model.cache.onnx", "tokenizer.json", "test.jsonl", "README.md" })
                Assert.That(entries, Has.Member($"tools/net10.0/any/models/{model}/{file}"));
        Assert.That(entries, Has.None.Contains("/training/"), "models/sudoku's checkpoint and puzzle pool stay in the repository");
        Assert.That(entries, Has.Member("tools/net10.0/any/runtimes/linux-x64/native/libonnxruntime.so"));
        // ONNX Runtime's CPU build only (Directory.Build.targets): the GPU build's providers are 290 MB, and the tool says
        // so when asked for a GPU engine (the install test).
        Assert.That(entries, Has.None.EndsWith("libonnxruntime_providers_cuda.so"));
        Assert.That(entries, Has.None.EndsWith("libonnxruntime_providers_tensorrt.so"));
        XElement metadata = PackagedFeed.Nuspec(package);
        Assert.That(metadata.Descendants().Where(e => e.Name.LocalName == "packageType").Select(e => e.Attribute("name")?.Value), Has.Member("DotnetTool"));
        using var zip = System.IO.Compression.ZipFile.OpenRead(package);
        using var settings = zip.GetEntry("tools/net10.0/any/DotnetToolSettings.xml")!.Open();
        XElement command = XDocument.Load(settings).Descendants("Command").Single();
        Assert.That(command.Attribute("Name")?.Value, Is.EqualTo("saber"));
        Assert.That(command.Attribute("EntryPoint")?.Value, Is.EqualTo("saber.dll"));
    }
}

/// <summary>The packages as a user gets them: fresh console projects restored from the feed (a CPU one, a GPU one), and
/// the dotnet tool.</summary>
public class PackageInstallTests
{
    private static PackagedFeed Feed => PackagedFeed.Instance;

    private const string Program = """
        using Saber;
        using Saber.Denoisers;

        // saber demo --synthetic's task: the model knows one completion and plants early mistakes that only later
        // context exposes; Saber (with backtracking) repairs all four.
        const string prompt = "def fibonacci(n):\n";
        const string completion = "    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n";
        Trap[] traps = [new(10, CharVocabulary.Encode('>')), new(12, CharVocabulary.Encode('1')), new(26, CharVocabulary.Encode('m')), new(40, CharVocabulary.Encode('f'))];
        var task = new SyntheticTask(CharVocabulary.Size, CharVocabulary.MaskId, [CharVocabulary.Encode(prompt)], [CharVocabulary.Encode(completion)], [traps]);
        var options = new DecodeOptions { GenerationLength = completion.Length, Strategy = new SaberStrategy() };
        DecodeResult result = await new CpuSampler().DecodeAsync(new SyntheticDenoiser(task), [task.Prompts[0]], options, CancellationToken.None);
        SequenceResult s = result.Sequences[0];
        Console.WriteLine($"completion ok: {CharVocabulary.Decode(s.Tokens) == completion}");
        Console.WriteLine($"mistakes left: {task.Mistakes(0, s.Tokens)}");
        Console.WriteLine($"nfe: {s.Nfe}");
        Console.WriteLine($"onnx runtime providers: {string.Join(", ", Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetAvailableProviders())}");
        #if SABER_NATIVE
        Saber.Native.NativeLibraryResolver.EnsureLoaded();
        string loaded = Saber.Native.NativeLibraryResolver.Candidates().First(File.Exists);
        Console.WriteLine($"native library: {Path.GetRelativePath(AppContext.BaseDirectory, loaded)}");
        Console.WriteLine($"built with cuda: {Saber.Native.SaberNative.BuiltWithCuda() != 0}");
        Console.WriteLine($"abi version: {Saber.Native.SaberNative.AbiVersion()}");
        #endif
        """;

    private static readonly Lazy<ProcessResult> Consumer = new(RunConsumer, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>A fresh console project referencing Saber.Native.Core and Saber.Native.Onnx (and Saber.Native.Cuda when the
    /// runtime package was packed) from the feed, restored, built without a runtime identifier and run once.</summary>
    private static ProcessResult RunConsumer()
    {
        bool native = Feed.NativeSkipReason is null;
        string references = $"""    <PackageReference Include="Saber.Native.Core" Version="{Feed.Version}" />""";
        references += $"""{"\n"}    <PackageReference Include="Saber.Native.Onnx" Version="{Feed.Version}" />""";
        if (native) references += $"""{"\n"}    <PackageReference Include="Saber.Native.Cuda" Version="{Feed.Version}" />""";
        string properties = $"""    <DefineConstants Condition="{(native ? "true" : "false")}">$(DefineConstants);SABER_NATIVE</DefineConstants>""";
        return RunConsoleProject("consumer", properties, references, Program);
    }

    /// <summary>
    /// Writes a console project named <paramref name="folder"/> under the feed's root with the given extra properties, package
    /// references and program, restores it from the feed, builds it without a runtime identifier and runs it once.
    /// </summary>
    private static ProcessResult RunConsoleProject(string folder, string properties, string references, string program)
    {
        string project = Path.Combine(Feed.Root, folder);
        Feed.WriteNuGetConfig(project);
        File.WriteAllText(Path.Combine(project, folder + ".csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
            {properties}
              </PropertyGroup>
              <ItemGroup>
            {references}
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(project, "Program.cs"), program);
        ProcessResult run = Feed.Run("dotnet", ["run", "-c", "Release"], project, TimeSpan.FromMinutes(5));
        TestContext.Progress.WriteLine($"{folder}: restore, build and run in {run.Elapsed.TotalSeconds:F0} s");
        return run;
    }

    [Test]
    public void AConsoleProjectDecodesWithTheCpuSamplerFromTheFeed()
    {
        ProcessResult run = Consumer.Value;
        run.ThrowIfFailed();
        Assert.That(run.Output, Does.Contain("completion ok: True"));
        Assert.That(run.Output, Does.Contain("mistakes left: 0"));
        Assert.That(Regex.Match(run.Output, @"nfe: (\d+)").Groups[1].Value, Is.Not.Empty);
    }

    [Test]
    public void TheCpuConsoleProjectGetsOnnxRuntimesCpuBuildOnly()
    {
        ProcessResult run = Consumer.Value;
        run.ThrowIfFailed();
        // A user of Saber.Native.Onnx does not pull ONNX Runtime's GPU package (235 MB) or its providers.
        string native = Path.Combine(Feed.Root, "consumer", "bin", "Release", "net10.0", "runtimes", "linux-x64", "native");
        Assert.That(Path.Combine(native, "libonnxruntime.so"), Does.Exist);
        Assert.That(Directory.GetFiles(native).Select(Path.GetFileName), Has.None.StartsWith("libonnxruntime_providers_cuda"));
        Assert.That(Directory.GetFiles(native).Select(Path.GetFileName), Has.None.StartsWith("libonnxruntime_providers_tensorrt"));
        string providers = Regex.Match(run.Output, "onnx runtime providers: (.*)").Groups[1].Value;
        Assert.That(providers, Does.Contain("CPUExecutionProvider"));
        Assert.That(providers, Does.Not.Contain("CUDAExecutionProvider"));
    }

    private const string GpuProgram = """
        using Microsoft.ML.OnnxRuntime;
        using Saber.Onnx;

        Console.WriteLine($"onnx runtime providers: {string.Join(", ", OrtEnv.Instance().GetAvailableProviders())}");
        IReadOnlyList<string> missing = GpuRuntime.Missing(ExecutionProvider.Cuda);
        Console.WriteLine($"cuda missing: {(missing.Count == 0 ? "nothing" : string.Join("; ", missing))}");
        """;

    private static readonly Lazy<ProcessResult> GpuConsumer = new(RunGpuConsumer, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>A fresh console project referencing Saber.Native.Onnx.Gpu (and nothing else) from the feed, restored,
    /// built without a runtime identifier and run once.</summary>
    private static ProcessResult RunGpuConsumer()
    {
        string references = $"""    <PackageReference Include="{PackagedFeed.OnnxGpuId}" Version="{Feed.Version}" />""";
        return RunConsoleProject("gpu-consumer", "", references, GpuProgram);
    }

    /// <summary>Where the GPU consumer's restore found a package: its assets file's package folders, in NuGet's order
    /// (the temporary package folder, then the user's as a fallback).</summary>
    private static string RestoredPackage(string id, string version)
    {
        using JsonDocument assets = JsonDocument.Parse(File.ReadAllText(Path.Combine(Feed.Root, "gpu-consumer", "obj", "project.assets.json")));
        string relative = assets.RootElement.GetProperty("libraries").GetProperty($"{id}/{version}").GetProperty("path").GetString()!;
        foreach (JsonProperty folder in assets.RootElement.GetProperty("packageFolders").EnumerateObject())
            if (Directory.Exists(Path.Combine(folder.Name, relative)))
                return Path.Combine(folder.Name, relative);
        throw new DirectoryNotFoundException($"{id} {version} is in none of the restore's package folders");
    }

    [Test]
    public void AConsoleProjectReferencingOnnxGpuGetsOnnxRuntimesGpuBuild()
    {
        // Saber.Native.Onnx.Gpu depends on Saber.Native.Cuda, which depends on the runtime package.
        if (Feed.NativeSkipReason is { } reason) Assert.Ignore(reason);
        ProcessResult run = GpuConsumer.Value;
        run.ThrowIfFailed();
        // Both ONNX Runtime packages are in the graph (the CPU one through Saber.Native.Onnx) and both ship
        // libonnxruntime.so; the package's buildTransitive targets keep the GPU one.
        string native = Path.Combine(Feed.Root, "gpu-consumer", "bin", "Release", "net10.0", "runtimes", "linux-x64", "native");
        string gpuPackage = Path.Combine(RestoredPackage(PackagedFeed.OrtGpuPackage, PackagedFeed.OrtVersion), "runtimes", "linux-x64", "native");
        string cpuPackage = Path.Combine(RestoredPackage(PackagedFeed.OrtCpuPackage, PackagedFeed.OrtVersion), "runtimes", "linux-x64", "native");
        Assert.That(Path.Combine(native, "libonnxruntime_providers_cuda.so"), Does.Exist);
        byte[] copied = File.ReadAllBytes(Path.Combine(native, "libonnxruntime.so"));
        Assert.That(copied.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(gpuPackage, "libonnxruntime.so"))), Is.True,
            $"{native}/libonnxruntime.so is not the GPU package's ({gpuPackage})");
        Assert.That(copied.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(cpuPackage, "libonnxruntime.so"))), Is.False,
            "the CPU package's libonnxruntime.so was copied");

        // The process loads that build: its providers include CUDA's. What else the CUDA provider needs (driver, CUDA 13,
        // cuDNN 9, a device) depends on the machine, so GpuRuntime's report is printed, not asserted, beyond its not
        // naming ONNX Runtime's build.
        string providers = Regex.Match(run.Output, "onnx runtime providers: (.*)").Groups[1].Value;
        Assert.That(providers, Does.Contain("CUDAExecutionProvider"));
        Assert.That(providers, Does.Contain("CPUExecutionProvider"));
        Match missing = Regex.Match(run.Output, "cuda missing: (.*)");
        Assert.That(missing.Success, Is.True, run.Output);
        TestContext.Out.WriteLine($"GpuRuntime.Missing(Cuda) here: {missing.Groups[1].Value}");
        Assert.That(missing.Groups[1].Value, Does.Not.Contain("CPU build"));
    }

    [Test]
    public void TheConsoleProjectLoadsLibsaberNativeFromTheRuntimePackage()
    {
        if (Feed.NativeSkipReason is { } reason) Assert.Ignore(reason);
        ProcessResult run = Consumer.Value;
        run.ThrowIfFailed();
        // A RID-less build: NuGet copied the runtime package's library under runtimes/linux-x64/native, and the
        // resolver found it there (the test runs the consumer without SABER_NATIVE_LIBRARY).
        Assert.That(run.Output, Does.Contain($"native library: {Path.Combine("runtimes", "linux-x64", "native", "libsaber_native.so")}"));
        Assert.That(run.Output, Does.Contain("built with cuda: True"));
    }

    [Test]
    public void TheSaberToolInstallsFromTheFeedAndRunsTheDemoOnTheShippedTaskModel()
    {
        string config = Feed.WriteNuGetConfig(Path.Combine(Feed.Root, "tool-config"));
        string toolPath = Path.Combine(Feed.Root, "tools");
        ProcessResult install = Feed.Run("dotnet",
            ["tool", "install", PackagedFeed.ToolId, "--version", Feed.Version, "--tool-path", toolPath, "--configfile", config],
            Path.GetDirectoryName(config)!, TimeSpan.FromMinutes(3));
        install.ThrowIfFailed();

        // Run from an unrelated folder, so that a models/ under the working directory cannot stand in for the packaged one.
        string elsewhere = Path.Combine(Feed.Root, "elsewhere");
        Directory.CreateDirectory(elsewhere);
        ProcessResult demo = Feed.Run(Path.Combine(toolPath, "saber"), ["demo", "--no-color"], elsewhere, TimeSpan.FromMinutes(2));
        demo.ThrowIfFailed();
        Assert.That(demo.Output, Does.Contain("Saber on " + toolPath), "the task model is the one inside the installed tool");
        int sudoku = demo.Output.IndexOf("/models/sudoku/model.onnx (weights: sudoku task: ", StringComparison.Ordinal);
        int addition = demo.Output.IndexOf("/models/addition/model.onnx (weights: addition task: ", StringComparison.Ordinal);
        Assert.That(sudoku, Is.GreaterThanOrEqualTo(0), "the Sudoku model's section: " + demo.Output);
        Assert.That(addition, Is.GreaterThan(sudoku), "the addition model's section, after Sudoku's: " + demo.Output);
        Assert.That(demo.Output, Does.Contain("Held-out problem "));
        Assert.That(demo.Output, Does.Contain("| saber reference |"));

        ProcessResult version = Feed.Run(Path.Combine(toolPath, "saber"), ["--version"], elsewhere, TimeSpan.FromMinutes(1));
        version.ThrowIfFailed();
        Assert.That(version.Output, Does.Contain($"saber {Feed.Version}"));

        // The tool carries ONNX Runtime's CPU build: a GPU engine is refused in one line that says so.
        ProcessResult gpu = Feed.Run(Path.Combine(toolPath, "saber"), ["generate", "--engine", "onnx-cuda", "--no-progress", "x"], elsewhere, TimeSpan.FromMinutes(1));
        Assert.That(gpu.ExitCode, Is.EqualTo(1), gpu.Output);
        string[] errors = gpu.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(errors, Has.Length.EqualTo(1), gpu.Error);
        Assert.That(errors[0], Does.Contain("engine cannot run here").And.Contain("CPU build"));
    }
}
