using Saber.Checkpoints.Fixtures;
using Saber.Import;

namespace Saber.Onnx.Gpu.Tests;

/// <summary>The models the tests run: the shipped tiny model, and LLaDA and Dream fixture checkpoints imported once per process.</summary>
internal static class TestModels
{
    private static readonly Lazy<string> Root = new(() =>
    {
        string root = System.IO.Directory.CreateTempSubdirectory("saber-onnx-gpu-tests-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => System.IO.Directory.Delete(root, recursive: true);
        return root;
    });

    private static readonly Dictionary<string, string> Imported = [];

    public static string Tiny => Path.Combine(AppContext.BaseDirectory, "models", "tiny");

    /// <summary>A model directory by name: <c>tiny</c>, <c>llada</c> or <c>dream</c>.</summary>
    public static string Directory(string name)
    {
        if (name == "tiny") return Tiny;
        lock (Imported)
        {
            if (Imported.TryGetValue(name, out string? model)) return model;
            Family family = name == "llada" ? Family.LLaDA : name == "dream" ? Family.Dream : throw new ArgumentException(name);
            string checkpoint = Path.Combine(Root.Value, $"{name}-checkpoint");
            model = Path.Combine(Root.Value, $"{name}-model");
            CheckpointFixture.Write(checkpoint, new FixtureOptions { Family = family });
            new ModelImporter().Import(checkpoint, model, new ImportOptions());
            return Imported[name] = model;
        }
    }

    public static string ModelFile(string name) => Path.Combine(Directory(name), "model.onnx");

    /// <summary>Prompts of the given lengths, ids drawn from the vocabulary without the mask id, followed by <paramref name="g"/> masks.</summary>
    public static int[][] Canvases(int vocabulary, int maskId, int[] promptLengths, int g, int seed)
    {
        var rng = new Random(seed);
        return promptLengths.Select(p => Enumerable.Range(0, p + g)
            .Select(i => i >= p && rng.Next(3) > 0 ? maskId : (maskId + 1 + rng.Next(vocabulary - 1)) % vocabulary).ToArray()).ToArray();
    }
}
