namespace Saber.Cuda.Tests;

/// <summary>
/// The release order of <see cref="NativeHandle"/>s (managed only, so these run on every machine): a handle adopted from
/// an owner (a decode or buffer from its context) is destroyed before the owner, whatever order they are
/// disposed or finalized in, because <c>saber_context_destroy</c> refuses a context whose handles are alive.
/// </summary>
public class NativeHandleTests
{
    /// <summary>A handle whose native destroy only records its name.</summary>
    private sealed class RecordingHandle(string name, List<string> destroyed) : NativeHandle
    {
        protected override bool Destroy(nint value)
        {
            lock (destroyed) destroyed.Add(name);
            return true;
        }
    }

    [Test]
    public void DisposingTheOwnerFirstDefersItsReleaseUntilItsHandlesAreReleased()
    {
        var destroyed = new List<string>();
        var context = new RecordingHandle("context", destroyed);
        context.Adopt(1);
        var decode = new RecordingHandle("decode", destroyed);
        decode.Adopt(2, context);
        var buffer = new RecordingHandle("buffer", destroyed);
        buffer.Adopt(3, context);

        context.Dispose();
        Assert.That(destroyed, Is.Empty, "the context outlives its decode and buffer");
        Assert.Throws<ObjectDisposedException>(() => _ = context.Value, "but it is closed for new calls");
        decode.Dispose();
        Assert.That(destroyed, Is.EqualTo(new[] { "decode" }));
        buffer.Dispose();
        Assert.That(destroyed, Is.EqualTo(new[] { "decode", "buffer", "context" }));
        buffer.Dispose();
        Assert.That(destroyed, Has.Count.EqualTo(3), "released exactly once");
    }

    [Test]
    public void DisposingInCreationOrderReleasesTheOwnerLast()
    {
        var destroyed = new List<string>();
        var context = new RecordingHandle("context", destroyed);
        context.Adopt(1);
        var decode = new RecordingHandle("decode", destroyed);
        decode.Adopt(2, context);
        decode.Dispose();
        context.Dispose();
        Assert.That(destroyed, Is.EqualTo(new[] { "decode", "context" }));
    }

    [Test]
    public void AdoptingFromADisposedOwnerDestroysTheNewHandleAndThrows()
    {
        var destroyed = new List<string>();
        var context = new RecordingHandle("context", destroyed);
        context.Adopt(1);
        context.Dispose();
        var decode = new RecordingHandle("decode", destroyed);
        Assert.Throws<ObjectDisposedException>(() => decode.Adopt(2, context));
        Assert.That(destroyed, Is.EqualTo(new[] { "context", "decode" }), "the native handle created meanwhile is not leaked");
        Assert.That(decode.IsInvalid, Is.True);
    }

    [Test]
    public void FinalizersReleaseTheOwnerLastWhateverOrderTheyRunIn()
    {
        var destroyed = new List<string>();
        CreateAndForget(destroyed);
        for (int i = 0; i < 3 && destroyed.Count < 2; ++i)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        lock (destroyed) Assert.That(destroyed, Is.EqualTo(new[] { "decode", "context" }));
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void CreateAndForget(List<string> destroyed)
    {
        var context = new RecordingHandle("context", destroyed);
        context.Adopt(1);
        var decode = new RecordingHandle("decode", destroyed);
        decode.Adopt(2, context);
    }
}
