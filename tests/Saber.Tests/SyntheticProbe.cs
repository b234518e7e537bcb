using Saber.Denoisers;
namespace Saber.Tests;
public class SyntheticProbe
{
    [Test, Explicit]
    public async Task Probe()
    {
        foreach (int seed in new[]{1,2,3,4,5})
        {
        var task = SyntheticTask.Random(seed, 97, [5], 64, 4);
        foreach (var strat in new DecodingStrategy[]{ new SaberStrategy(), new SaberStrategy(Backtracking:false), new SaberStrategy(SaberVariant.Paper), new LowConfidenceStrategy(64), new ThresholdStrategy(0.9f)})
        {
            var den = new SyntheticDenoiser(task);
            var r = await new CpuSampler().DecodeAsync(den, [task.Prompts[0]], new DecodeOptions{GenerationLength=64, Strategy=strat});
            TestContext.Out.WriteLine($"{seed} {strat}: nfe {r.Sequences[0].Nfe} mistakes {task.Mistakes(0, r.Sequences[0].Tokens)} traps {task.TrapsLeft(0, r.Sequences[0].Tokens)}");
        }
        }
    }
}
