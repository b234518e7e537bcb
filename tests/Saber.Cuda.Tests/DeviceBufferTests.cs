namespace Saber.Cuda.Tests;

/// <summary><see cref="DeviceBuffer"/> and <see cref="CudaContext.WidenIds"/> (a GPU; ignored, with the reason, without one).</summary>
public class DeviceBufferTests
{
    [Test]
    public void WidenIdsRoundTripsEveryInt32ThroughDeviceBuffers()
    {
        CudaContext context = GpuFixture.Require();
        var random = new Random(24);
        int[] ids = new int[4099];
        for (int i = 0; i < ids.Length; i++) ids[i] = random.Next(int.MinValue, int.MaxValue);
        ids[0] = int.MinValue;
        ids[1] = int.MaxValue;
        ids[2] = -1;
        ids[3] = 0;
        using var source = DeviceBuffer.Create(context, (ulong)ids.Length * sizeof(int));
        using var destination = DeviceBuffer.Create(context, (ulong)ids.Length * sizeof(long));
        source.Upload<int>(ids);
        long[] poison = Enumerable.Repeat(0x5A5A5A5A5A5A5A5AL, ids.Length).ToArray();
        destination.Upload<long>(poison);

        context.WidenIds(source.Pointer, destination.Pointer, 0);
        long[] widened = new long[ids.Length];
        destination.Download<long>(widened);
        Assert.That(widened, Is.EqualTo(poison), "count 0 writes nothing");

        context.WidenIds(source.Pointer, destination.Pointer, ids.Length - 1);
        destination.Download<long>(widened);   // ordered after the widening on the context's stream
        Assert.That(widened.AsSpan(0, ids.Length - 1).ToArray(), Is.EqualTo(ids[..^1].Select(i => (long)i).ToArray()));
        Assert.That(widened[^1], Is.EqualTo(poison[^1]), "nothing past count");
        Assert.That(widened[0], Is.EqualTo((long)int.MinValue));
        Assert.That(widened[1], Is.EqualTo((long)int.MaxValue));
    }

    [Test]
    public void WidenIdsNamesBadArguments()
    {
        CudaContext context = GpuFixture.Require();
        using var source = DeviceBuffer.Create(context, 64);
        using var destination = DeviceBuffer.Create(context, 128);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => context.WidenIds(source.Pointer, destination.Pointer, -3));
        Assert.That(e!.ParamName, Is.EqualTo("count"));
        Assert.That(e.Message, Does.Contain("got -3"));
        var a = Assert.Throws<ArgumentException>(() => context.WidenIds(0, destination.Pointer, 4));
        Assert.That(a!.ParamName, Is.EqualTo("deviceInt32Source"));
        Assert.That(a.Message, Does.Contain("null with count 4"));
        a = Assert.Throws<ArgumentException>(() => context.WidenIds(source.Pointer, 0, 4));
        Assert.That(a!.ParamName, Is.EqualTo("deviceInt64Destination"));
        Assert.DoesNotThrow(() => context.WidenIds(0, 0, 0), "count 0 needs no addresses");
        // The native checks: alignment and overlap, with the native message.
        a = Assert.Throws<ArgumentException>(() => context.WidenIds(source.Pointer + 2, destination.Pointer, 4));
        Assert.That(a!.Message, Does.Contain("saber_context_widen_ids: device_source must be 4-byte aligned"));
        a = Assert.Throws<ArgumentException>(() => context.WidenIds(source.Pointer, destination.Pointer + 4, 4));
        Assert.That(a!.Message, Does.Contain("device_destination must be 8-byte aligned"));
        a = Assert.Throws<ArgumentException>(() => context.WidenIds(destination.Pointer, destination.Pointer + 8, 4));
        Assert.That(a!.Message, Does.Contain("overlap"));
        context.Synchronize();
    }

    [Test]
    public void UploadAndDownloadCheckTheirRangeAndKeepTheOffset()
    {
        CudaContext context = GpuFixture.Require();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => DeviceBuffer.Create(context, 0));
        Assert.That(e!.ParamName, Is.EqualTo("bytes"));
        using var buffer = DeviceBuffer.Create(context, 16);
        Assert.That(buffer.Bytes, Is.EqualTo(16UL));
        Assert.That(buffer.Pointer, Is.Not.EqualTo((nint)0));
        buffer.Upload<int>([1, 2, 3, 4]);
        buffer.Upload<short>([-5, 6], offsetBytes: 4);
        int[] back = new int[2];
        buffer.Download<int>(back, offsetBytes: 8);
        Assert.That(back, Is.EqualTo(new[] { 3, 4 }));
        short[] halves = new short[2];
        buffer.Download<short>(halves, offsetBytes: 4);
        Assert.That(halves, Is.EqualTo(new short[] { -5, 6 }));

        e = Assert.Throws<ArgumentOutOfRangeException>(() => buffer.Upload<long>([1, 2, 3]));
        Assert.That(e!.ParamName, Is.EqualTo("source"));
        Assert.That(e.Message, Does.Contain("24 bytes at offset 0").And.Contain("16-byte buffer"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => buffer.Download<int>(new int[2], offsetBytes: 12));
        Assert.That(e!.ParamName, Is.EqualTo("destination"));
        Assert.That(e.Message, Does.Contain("8 bytes at offset 12").And.Contain("4 bytes left"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => buffer.Upload<int>([], offsetBytes: 17));
        Assert.That(e!.ParamName, Is.EqualTo("offsetBytes"));
        Assert.DoesNotThrow(() => buffer.Upload<int>([], offsetBytes: 16), "an empty copy at the end");
    }

    [Test]
    public void ADisposedBufferHandsOutNoAddress()
    {
        CudaContext context = GpuFixture.Require();
        var buffer = DeviceBuffer.Create(context, 8);
        buffer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => _ = buffer.Pointer);
        Assert.Throws<ObjectDisposedException>(() => buffer.Upload<int>([1]));
        buffer.Dispose();
    }
}
