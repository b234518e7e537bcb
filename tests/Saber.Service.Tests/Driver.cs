namespace Saber.Service.Tests;

/// <summary>One planned request: submitted once the gate has seen <see cref="AtCall"/> forward passes.</summary>
internal sealed record Planned(int[] Prompt, DecodeOptions Options, int AtCall);

internal static class Driver
{
    /// <summary>
    /// Runs a plan deterministically: the engine's passes wait at the gate; while pass <c>k</c> waits, the requests
    /// planned at <c>k</c> are submitted (so they join at the next step), then the pass is released. When everything
    /// submitted has finished and requests remain, the next ones are submitted at once.
    /// </summary>
    public static async Task<SequenceResult[]> RunAsync(SaberEngine engine, GatedDenoiser gate, IReadOnlyList<Planned> plan)
    {
        var tasks = new Task<SequenceResult>?[plan.Count];
        int calls = 0;
        void SubmitDue()
        {
            for (int i = 0; i < plan.Count; i++)
                if (tasks[i] is null && plan[i].AtCall <= calls)
                    tasks[i] = engine.DecodeAsync(plan[i].Prompt, plan[i].Options);
        }

        SubmitDue();
        Task<DenoiseRequest>? arrival = null;
        while (true)
        {
            Task<SequenceResult>[] submitted = tasks.Where(t => t is not null).ToArray()!;
            bool allSubmitted = submitted.Length == plan.Count;
            Task settled = Task.WhenAll(submitted.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
            if (allSubmitted && settled.IsCompleted) break;
            arrival ??= gate.ArrivalAsync();
            Task first = await Task.WhenAny(arrival, settled).WaitAsync(TimeSpan.FromSeconds(60));
            if (first == arrival)
            {
                arrival = null;
                calls++;
                SubmitDue();
                gate.Release();
            }
            else if (!allSubmitted)
            {
                calls = plan.Where((_, i) => tasks[i] is null).Min(p => p.AtCall);
                SubmitDue();
            }
        }
        return await Task.WhenAll(tasks!);
    }
}
