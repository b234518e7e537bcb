namespace Saber.Onnx;

/// <summary>
/// One sequence's keys and values in host memory, laid out as the cache graph's <c>past_key_{i}</c> / <c>past_value_{i}</c>
/// inputs take them: per layer, float32 [kv_heads, positions, head_dim] (keys after the rotary embedding).
/// </summary>
internal sealed class OnnxKeyValueCache : IDenoiserCache
{
    private readonly CacheGraph owner;
    private int disposed;

    public OnnxKeyValueCache(CacheGraph owner, int positions)
    {
        this.owner = owner;
        Positions = positions;
        int layers = owner.Shape.Layers;
        int perLayer = owner.Shape.KvHeads * positions * owner.Shape.HeadDim;   // checked against Array.MaxLength by CacheGraph.Create
        Keys = new float[layers][];
        Values = new float[layers][];
        for (int l = 0; l < layers; l++)
        {
            Keys[l] = new float[perLayer];
            Values[l] = new float[perLayer];
        }
        Bytes = owner.Shape.BytesPerPosition * positions;
    }

    public int Positions { get; }
    public long Bytes { get; }
    public float[][] Keys { get; }
    public float[][] Values { get; }

    /// <summary>The graph that made it: a window must run on the same one.</summary>
    public CacheGraph Owner => owner;

    public bool IsDisposed => Volatile.Read(ref disposed) != 0;

    /// <summary>The rows of the last windowed call (valid until the sequence's next call), grown as needed.</summary>
    public float[] Logits { get; set; } = [];

    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 0) owner.Release(Bytes);
    }
}
