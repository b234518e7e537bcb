using System.Diagnostics;
using Saber.Bindings.Generator;

// saber-bindgen: generates bindings/Saber.Native.Bindings/SaberNative.g.cs from native/include/saber/saber.h.
//   dotnet run --project bindings/generator [-- --check] [--clang clang-14]
// --check regenerates in memory and fails (exit 1) with the differing lines when the committed file is stale.
string root = FindRoot(AppContext.BaseDirectory) ?? FindRoot(Directory.GetCurrentDirectory())
    ?? throw new InvalidOperationException("saber-bindgen: run it inside the repository (Saber.Native.sln not found above here)");
string header = "native/include/saber/saber.h";
string output = "bindings/Saber.Native.Bindings/SaberNative.g.cs";
string clang = "clang-14";
bool check = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--check": check = true; break;
        case "--clang" when i + 1 < args.Length: clang = args[++i]; break;
        case "--header" when i + 1 < args.Length: header = args[++i]; break;
        case "--output" when i + 1 < args.Length: output = args[++i]; break;
        default:
            Console.Error.WriteLine($"saber-bindgen: unknown argument '{args[i]}'\nusage: saber-bindgen [--check] [--clang PATH] [--header H] [--output F]");
            return 2;
    }
}

string headerFull = Path.Combine(root, header);
string ast = RunClang(clang, ["-x", "c", "-Xclang", "-ast-dump=json", "-fsyntax-only", "-fparse-all-comments", headerFull]);
string macros = RunClang(clang, ["-x", "c", "-dM", "-E", headerFull]);
HeaderModel model = HeaderReader.Read(ast, macros, "saber_");
string generated = new BindingWriter(model, header, "saber_native", "Saber.Native", "SaberNative").Write();
string outputFull = Path.Combine(root, output);

if (check)
{
    string committed = File.Exists(outputFull) ? File.ReadAllText(outputFull) : "";
    if (committed == generated)
    {
        Console.WriteLine($"saber-bindgen: {output} is up to date ({model.Functions.Count} functions, {model.Structs.Count} structs, {model.Enums.Count} enums, {model.Constants.Count} constants)");
        return 0;
    }
    Console.Error.WriteLine($"saber-bindgen: {output} is stale; regenerate with `dotnet run --project bindings/generator`. First differences (- committed, + generated):");
    string[] a = committed.Split('\n'), b = generated.Split('\n');
    int shown = 0;
    for (int i = 0; i < Math.Max(a.Length, b.Length) && shown < 20; i++)
    {
        string? x = i < a.Length ? a[i] : null, y = i < b.Length ? b[i] : null;
        if (x == y) continue;
        if (x is not null) Console.Error.WriteLine($"{i + 1,5} - {x}");
        if (y is not null) Console.Error.WriteLine($"{i + 1,5} + {y}");
        shown++;
    }
    return 1;
}

Directory.CreateDirectory(Path.GetDirectoryName(outputFull)!);
string temporary = outputFull + ".tmp";
File.WriteAllText(temporary, generated);
File.Move(temporary, outputFull, overwrite: true);   // never a half-written file
Console.WriteLine($"saber-bindgen: wrote {output} ({model.Functions.Count} functions, {model.Structs.Count} structs, {model.Enums.Count} enums, {model.Constants.Count} constants)");
return 0;

static string RunClang(string clang, string[] arguments)
{
    var start = new ProcessStartInfo(clang) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (string a in arguments) start.ArgumentList.Add(a);
    Process process;
    try
    {
        process = Process.Start(start)!;
    }
    catch (System.ComponentModel.Win32Exception e)
    {
        throw new InvalidOperationException($"saber-bindgen: cannot run '{clang}' ({e.Message}); install clang-14 (tools/install-cuda-toolkit.sh) or pass --clang PATH", e);
    }
    Task<string> stdout = process.StandardOutput.ReadToEndAsync();
    string stderr = process.StandardError.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0)
        throw new InvalidOperationException($"saber-bindgen: {clang} {string.Join(' ', arguments)} failed with exit code {process.ExitCode}:\n{stderr}");
    return stdout.Result;
}

static string? FindRoot(string start)
{
    for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
        if (File.Exists(Path.Combine(d.FullName, "Saber.Native.sln"))) return d.FullName;
    return null;
}
