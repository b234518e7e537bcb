namespace Saber.Tests;

/// <summary>
/// Decodes a sequence alone and inside batches of other prompts, and asserts its result the same bit for bit (canvas,
/// NFE, every traced number): a sequence's decode is a function of its own logits, the seed and its coordinates. Used
/// for the CPU sampler here and for the CUDA sampler in Saber.Cuda.Tests.
/// </summary>
internal static class BatchComposition
{
    public delegate Task<DecodeResult> Decoder(IDenoiser denoiser, ReadOnlyMemory<int>[] prompts, DecodeOptions options);

    /// <param name="keepIndex">
    /// Keep the sequence at index 0 of every batch. Random draws (Gumbel noise, the random metric) are keyed by the
    /// sequence's index in its batch (spec §2), so only then can a sampled decode be compared with the lone one; a
    /// greedy decode is compared at a random index.
    /// </param>
    public static async Task AssertAloneEqualsInBatches(Decoder decode, IDenoiser denoiser, int[] prompt, DecodeOptions options,
        int[] batchSizes, bool keepIndex, int seed)
    {
        SequenceResult alone = (await decode(denoiser, [prompt], options)).Sequences[0];
        var rng = new Random(seed);
        foreach (int size in batchSizes)
        {
            int index = keepIndex ? 0 : rng.Next(size);
            var prompts = new ReadOnlyMemory<int>[size];
            for (int b = 0; b < size; b++)
                prompts[b] = b == index ? prompt : OtherPrompt(rng, denoiser);
            DecodeResult batch = await decode(denoiser, prompts, options);
            TestContext.Out.WriteLine($"batch of {size}: the sequence at index {index}");
            TraceComparison.AssertIdenticalSequence(alone, batch.Sequences[index], index);
        }
    }

    private static int[] OtherPrompt(Random rng, IDenoiser denoiser)
    {
        var prompt = new int[rng.Next(0, 6)];
        for (int i = 0; i < prompt.Length; i++)
            prompt[i] = RandomDenoiser.NonMaskToken(rng, denoiser.VocabularySize, denoiser.MaskId);
        return prompt;
    }
}
