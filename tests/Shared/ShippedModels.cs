namespace Saber.Testing;

/// <summary>Facts of the shipped models for tests, and copies of them without their cache graph.</summary>
internal static class ShippedModels
{
    private static readonly Dictionary<string, string> Copies = [];

    /// <summary>
    /// A copy of a shipped model directory without <c>model.cache.onnx</c> (how a model imported before cache graphs looks):
    /// made once per process in the temporary folder and deleted when the process exits.
    /// </summary>
    public static string WithoutCacheGraph(string directory)
    {
        lock (Copies)
        {
            if (Copies.TryGetValue(directory, out string? copy)) return copy;
            copy = Directory.CreateTempSubdirectory("saber-no-cache-graph-").FullName;
            foreach (string file in Directory.GetFiles(directory).Where(f => Path.GetFileName(f) != "model.cache.onnx"))
                File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Directory.Delete(copy, recursive: true);
            return Copies[directory] = copy;
        }
    }

    /// <summary>
    /// The FLOPs of one uncached call of a shipped model on a canvas of <paramref name="n"/> positions, from its model card
    /// (4 layers, d 128, 4 heads of 32, SwiGLU 352, V 100; its graph computes every row): per layer and position 2·d·4d for
    /// q, k, v, o, 2·3·d·352 for the SwiGLU, 2·2·d·n for the attention; 2·d·V per logits row.
    /// </summary>
    public static long PlainPassFlops(int n) => 4L * n * (2 * 128 * 4 * 128 + 6 * 128 * 352 + 4 * 128 * n) + 2L * 128 * 100 * n;
}
