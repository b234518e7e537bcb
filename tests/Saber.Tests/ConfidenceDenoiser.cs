namespace Saber.Tests;

/// <summary>
/// A model whose confidences are written by hand: at each step, generation index g predicts a token
/// with a chosen probability. V = 10, mask id 9 (given −∞, so probabilities are exact up to rounding):
/// the predicted token gets probability p, the eight others share 1 − p. p must exceed 1/9.
/// The predicted token is <see cref="TokenAt"/> unless <paramref name="token"/> (step, g) chooses one in [0, 9).
/// </summary>
internal sealed class ConfidenceDenoiser(int promptLength, Func<int, int, float> probability, Func<int, int, int>? token = null) : IDenoiser
{
    public const int Vocabulary = 10;
    public const int Mask = 9;

    public int VocabularySize => Vocabulary;
    public int MaskId => Mask;
    public int Calls { get; private set; }

    /// <summary>The token predicted at generation index <paramref name="g"/> (fixed, so re-commits give the same token).</summary>
    public static int TokenAt(int g) => g % 9;

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        Calls++;
        var result = new List<SequenceLogits>();
        foreach (ReadOnlyMemory<int> canvas in request.Canvases)
        {
            var data = new float[canvas.Length * Vocabulary];
            for (int pos = 0; pos < canvas.Length; pos++)
            {
                int g = pos - promptLength;
                float p = g < 0 ? 0.5f : probability(request.Step, g);
                Assert.That(p, Is.GreaterThan(1f / 9).And.LessThan(1f), "test set-up: p must make the token the argmax");
                int predicted = g >= 0 && token is not null ? token(request.Step, g) : Math.Max(g, 0) % 9;
                Assert.That(predicted, Is.InRange(0, 8), "test set-up: a token other than the mask");
                var row = data.AsSpan(pos * Vocabulary, Vocabulary);
                row.Fill(MathF.Log((1 - p) / 8));
                row[predicted] = MathF.Log(p);
                row[Mask] = float.NegativeInfinity;
            }
            result.Add(SequenceLogits.FromFloat32(data, canvas.Length, Vocabulary));
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
    }
}
