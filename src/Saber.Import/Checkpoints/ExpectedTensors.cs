namespace Saber.Import.Checkpoints;

/// <summary>
/// The tensors a checkpoint of a given architecture must hold, exactly: names from <see cref="WeightNames"/>, shapes from
/// the spec. Neither family's published modeling code saves a buffer (the rotary tables are computed, or registered
/// with <c>persistent=False</c>), so any other tensor is an error rather than something to skip.
/// </summary>
public static class ExpectedTensors
{
    /// <summary>Every tensor name and its <c>[out, in]</c> (or vector) shape, embedding first, then the blocks in order, then the final norm and head.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> For(ArchitectureSpec spec)
    {
        var tensors = new List<(string, long[])> { (WeightNames.Embedding(spec.Family), [spec.Vocabulary, spec.HiddenSize]) };
        for (int layer = 0; layer < spec.Layers; layer++)
        {
            BlockNames block = WeightNames.Block(spec.Family, layer);
            void Linear(string prefix, long outputs, long inputs, bool bias)
            {
                tensors.Add((prefix + ".weight", [outputs, inputs]));
                if (bias) tensors.Add((prefix + ".bias", [outputs]));
            }
            tensors.Add((block.AttentionNorm, [spec.HiddenSize]));
            Linear(block.Query, spec.HiddenSize, spec.HiddenSize, spec.QkvBias);
            Linear(block.Key, spec.KvWidth, spec.HiddenSize, spec.QkvBias);
            Linear(block.Value, spec.KvWidth, spec.HiddenSize, spec.QkvBias);
            Linear(block.AttentionOut, spec.HiddenSize, spec.HiddenSize, spec.LinearBias);
            tensors.Add((block.MlpNorm, [spec.HiddenSize]));
            Linear(block.Gate, spec.IntermediateSize, spec.HiddenSize, spec.LinearBias);
            Linear(block.Up, spec.IntermediateSize, spec.HiddenSize, spec.LinearBias);
            Linear(block.Down, spec.HiddenSize, spec.IntermediateSize, spec.LinearBias);
        }
        tensors.Add((WeightNames.FinalNorm(spec.Family), [spec.HiddenSize]));
        if (!spec.TiedEmbeddings)
        {
            string head = WeightNames.OutputHead(spec.Family);
            tensors.Add((head + ".weight", [spec.Vocabulary, spec.HiddenSize]));
            // LLaDA's untied ff_out is an nn.Linear with bias=include_bias; Dream's lm_head never has one.
            if (spec.LinearBias) tensors.Add((head + ".bias", [spec.Vocabulary]));
        }
        return tensors;
    }

    /// <summary>
    /// Checks that <paramref name="checkpoint"/> holds exactly the tensors of <paramref name="spec"/>, each with the
    /// expected shape and a float dtype (F32, F16, BF16), and returns them as <see cref="TensorShape"/>s in the order of <see cref="For"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">A missing, extra, misshapen or non-float tensor; the message names the file, the tensor and both shapes.</exception>
    public static IReadOnlyList<TensorShape> Check(ArchitectureSpec spec, SafetensorsCheckpoint checkpoint)
    {
        IReadOnlyList<(string Name, long[] Shape)> expected = For(spec);
        var expectedNames = expected.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        string files = checkpoint.IndexPath ?? checkpoint.Files[0].Path;
        var shapes = new List<TensorShape>(expected.Count);
        foreach ((string name, long[] shape) in expected)
        {
            if (!checkpoint.Tensors.TryGetValue(name, out SafetensorsTensor? tensor))
                throw new InvalidDataException(
                    $"'{files}': tensor '{name}' is missing; a {spec.Family} checkpoint of this config needs it with shape {SafetensorsFile.FormatShape(shape)}.");
            if (!tensor.Shape.SequenceEqual(shape))
                throw new InvalidDataException(
                    $"'{tensor.File}', tensor '{name}': shape {SafetensorsFile.FormatShape(tensor.Shape)}, expected {SafetensorsFile.FormatShape(shape)} from the config.");
            if (tensor.WeightType is not { } type)
                throw new InvalidDataException(
                    $"'{tensor.File}', tensor '{name}': dtype {tensor.DType}, expected a float weight (F32, F16 or BF16).");
            shapes.Add(new TensorShape(name, type, tensor.Shape));
        }
        SafetensorsTensor? extra = checkpoint.Tensors.Values.Where(t => !expectedNames.Contains(t.Name)).OrderBy(t => t.Name, StringComparer.Ordinal).FirstOrDefault();
        if (extra is not null)
            throw new InvalidDataException(
                $"'{extra.File}', tensor '{extra.Name}' (shape {SafetensorsFile.FormatShape(extra.Shape)}): not a tensor of a {spec.Family} checkpoint of this config" +
                (spec.TiedEmbeddings && extra.Name.StartsWith(WeightNames.OutputHead(spec.Family) + ".", StringComparison.Ordinal)
                    ? " (the config ties the output head to the embedding)." : "."));
        return shapes;
    }
}
