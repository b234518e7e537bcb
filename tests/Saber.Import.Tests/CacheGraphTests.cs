using System.Security.Cryptography;
using Saber.Checkpoints.Fixtures;
using Saber.Import.Checkpoints;

namespace Saber.Import.Tests;

/// <summary>
/// The KV-cache graph (<see cref="Onnx.CacheGraph"/>, <c>model.cache.onnx</c>) against the plain graph: a full pass equals
/// it, a windowed pass on an unchanged canvas reproduces the full pass's rows and keys/values, a stale cache is approximate,
/// padding on the right of the key axis changes nothing; and the plain graph's bytes did not change when the forward pass
/// was shared between the two.
/// </summary>
public sealed class CacheGraphTests
{
    // SHA-256 of the plain graphs as written before the forward pass was shared with the cache graph (commit 4446814):
    // TinyModel's graph of each fixture, and the importer's model.onnx of a fixture checkpoint folder named "checkpoint".
    [TestCase(Family.LLaDA, false, false, FixtureDType.F32, "e167b7992aaa10eeddb547149d4ff7f04746e34b2df9159f62d8175b49a7551b")]
    [TestCase(Family.LLaDA, true, true, FixtureDType.BF16, "865dc985ea5cad2f8f8993be6772c2ef68c627b00e97d9129c5b0f7ad5480e30")]
    [TestCase(Family.LLaDA, false, true, FixtureDType.F16, "c790a7622ad569df7a7105a468d8a08368033b68af9de87a975dfe807d71952b")]
    [TestCase(Family.Dream, false, false, FixtureDType.F32, "da1e0264ec6648dbed264b31df367a284446c0ead31f376e6fed2f277dd571df")]
    public void ThePlainGraphIsByteIdenticalToTheOneWrittenBeforeTheCacheGraph(Family family, bool tied, bool bias, FixtureDType type, string sha256)
    {
        using var model = TinyModel.Create((family == Family.LLaDA ? TinyModel.LLaDA(tied, bias) : TinyModel.Dream()) with { DType = type });
        Assert.That(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(model.GraphPath))), Is.EqualTo(sha256));
    }

    [TestCase(Family.LLaDA, "941f973dad8380eb90db71c9863542c49812212d993ddf242c6eb599a80d1f9c")]
    [TestCase(Family.Dream, "46321983bbffe65d0eed8b2cc30322b9a8f1eecce2362497e0effe1cc2c0a11b")]
    public void TheImportersModelOnnxIsByteIdenticalToTheOneWrittenBeforeTheCacheGraph(Family family, string sha256)
    {
        string root = Directory.CreateTempSubdirectory("saber-cache-graph-").FullName;
        try
        {
            string checkpoint = TestCheckpoints.Write(Path.Combine(root, "checkpoint"),
                new FixtureOptions { Family = family, TiedEmbeddings = family == Family.LLaDA, IncludeBias = family == Family.LLaDA });
            new ModelImporter().Import(checkpoint, Path.Combine(root, "model"),
                new ImportOptions { DType = family == Family.Dream ? WeightType.BFloat16 : null });
            Assert.That(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(root, "model", "model.onnx")))), Is.EqualTo(sha256));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
