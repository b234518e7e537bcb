using Saber.Import.Checkpoints;

namespace Saber.Import.Tests;

/// <summary>
/// The forward pass of one unpadded canvas in plain double loops, written from the modeling code's definitions and not
/// from the graph builder: embedding; per block h = x + o(attn(norm(x))), x = h + down(silu(gate(norm(h))) · up(norm(h)));
/// RMSNorm x / sqrt(mean(x²) + eps) · w (+ b); rotate-half rotary embedding at positions 0..n−1; bidirectional attention,
/// query head j reading key/value head j / (heads / kv_heads); final norm; head (the embedding when tied).
/// </summary>
internal static class LiteralForward
{
    /// <summary>The logits [position][V] of <paramref name="ids"/>, the canvas alone.</summary>
    public static double[][] Logits(ArchitectureSpec spec, IReadOnlyDictionary<string, double[]> w, int[] ids)
    {
        int hidden = spec.HiddenSize;
        double[] embedding = w[WeightNames.Embedding(spec.Family)];
        double[][] x = ids.Select(id => embedding.AsSpan(id * hidden, hidden).ToArray()).ToArray();
        for (int layer = 0; layer < spec.Layers; layer++)
        {
            BlockNames block = WeightNames.Block(spec.Family, layer);
            x = Add(x, Attention(spec, w, block, Norm(spec, w, block.AttentionNorm, x)));
            double[][] h = Norm(spec, w, block.MlpNorm, x);
            double[][] gate = Linear(w, block.Gate, h), up = Linear(w, block.Up, h);
            double[][] activated = gate.Select((g, t) => g.Select((a, j) => a / (1 + Math.Exp(-a)) * up[t][j]).ToArray()).ToArray();
            x = Add(x, Linear(w, block.Down, activated));
        }
        double[][] normed = Norm(spec, w, WeightNames.FinalNorm(spec.Family), x);
        return spec.TiedEmbeddings
            ? Project(normed, embedding, null, spec.Vocabulary)
            : Linear(w, WeightNames.OutputHead(spec.Family), normed);
    }

    private static double[][] Attention(ArchitectureSpec spec, IReadOnlyDictionary<string, double[]> w, BlockNames block, double[][] h)
    {
        int n = h.Length, d = spec.HeadDim, group = spec.Heads / spec.KvHeads;
        double[][] q = Rotary(spec, Linear(w, block.Query, h)), k = Rotary(spec, Linear(w, block.Key, h));
        double[][] v = Linear(w, block.Value, h);
        var merged = new double[n][];
        for (int t = 0; t < n; t++)
        {
            merged[t] = new double[spec.Heads * d];
            for (int head = 0; head < spec.Heads; head++)
            {
                int kv = head / group;
                var scores = new double[n];
                for (int s = 0; s < n; s++)
                {
                    for (int i = 0; i < d; i++) scores[s] += q[t][head * d + i] * k[s][kv * d + i];
                    scores[s] /= Math.Sqrt(d);
                }
                double max = scores.Max();
                double[] e = scores.Select(a => Math.Exp(a - max)).ToArray();
                double total = e.Sum();
                for (int s = 0; s < n; s++)
                    for (int i = 0; i < d; i++)
                        merged[t][head * d + i] += e[s] / total * v[s][kv * d + i];
            }
        }
        return Linear(w, block.AttentionOut, merged);
    }

    /// <summary>Rotates every head of every position t: pair (i, i + d/2) by angle t / theta^(2i/d).</summary>
    private static double[][] Rotary(ArchitectureSpec spec, double[][] x)
    {
        int d = spec.HeadDim, half = d / 2;
        return x.Select((row, t) =>
        {
            var rotated = new double[row.Length];
            for (int head = 0; head < row.Length / d; head++)
                for (int i = 0; i < half; i++)
                {
                    double angle = t / Math.Pow(spec.RopeTheta, 2.0 * i / d);
                    double a = row[head * d + i], b = row[head * d + half + i];
                    rotated[head * d + i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                    rotated[head * d + half + i] = b * Math.Cos(angle) + a * Math.Sin(angle);
                }
            return rotated;
        }).ToArray();
    }

    private static double[][] Norm(ArchitectureSpec spec, IReadOnlyDictionary<string, double[]> w, string weightName, double[][] x)
    {
        double[] weight = w[weightName];
        double[]? bias = w.GetValueOrDefault(weightName[..^".weight".Length] + ".bias");
        return x.Select(row =>
        {
            double scale = 1 / Math.Sqrt(row.Sum(a => a * a) / row.Length + spec.RmsNormEps);
            return row.Select((a, j) => a * scale * weight[j] + (bias?[j] ?? 0)).ToArray();
        }).ToArray();
    }

    /// <summary>x Wᵀ + b for a PyTorch linear layer stored [out, in], with its bias when the checkpoint has one.</summary>
    private static double[][] Linear(IReadOnlyDictionary<string, double[]> w, string prefix, double[][] x)
    {
        double[] weight = w[prefix + ".weight"];
        return Project(x, weight, w.GetValueOrDefault(prefix + ".bias"), weight.Length / x[0].Length);
    }

    private static double[][] Project(double[][] x, double[] weight, double[]? bias, int outputs)
    {
        int inputs = x[0].Length;
        return x.Select(row =>
        {
            var y = new double[outputs];
            for (int o = 0; o < outputs; o++)
            {
                double sum = bias?[o] ?? 0;
                for (int i = 0; i < inputs; i++) sum += weight[o * inputs + i] * row[i];
                y[o] = sum;
            }
            return y;
        }).ToArray();
    }

    private static double[][] Add(double[][] a, double[][] b) => a.Select((row, t) => row.Select((v, j) => v + b[t][j]).ToArray()).ToArray();
}
