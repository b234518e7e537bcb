using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Saber.Cuda;

namespace Saber.Onnx.Gpu;

/// <summary>
/// The memory the device engine binds ONNX Runtime's inputs and outputs to, and the two operations a step needs on it. On a
/// GPU it is device memory of a <see cref="CudaContext"/> with its work ordered on the context's stream; the host kind runs
/// the same binding code with ONNX Runtime's CPU provider, so that it is tested on machines without a GPU.
/// </summary>
internal abstract class ModelMemory : IDisposable
{
    /// <summary>Where the bound tensors live, for <see cref="OrtValue.CreateTensorValueWithData"/>.</summary>
    public abstract OrtMemoryInfo Info { get; }

    /// <summary>A block of <paramref name="bytes"/> (> 0), freed with <see cref="IDisposable.Dispose"/>.</summary>
    public abstract Block Allocate(long bytes);

    /// <summary>Copies <paramref name="values"/> to <paramref name="destination"/>; done when it returns (inputs fixed for a decode).</summary>
    public abstract void Upload(ReadOnlySpan<long> values, nint destination);

    /// <summary>int64 <paramref name="destination"/>[i] = int32 <paramref name="source"/>[i], ordered before the forward pass that follows.</summary>
    public abstract void WidenIds(nint source, nint destination, long count);

    /// <summary>Releases what the memory kind holds itself (not its blocks, which are disposed one by one).</summary>
    public virtual void Dispose()
    {
    }

    /// <summary>An allocation and its address.</summary>
    public abstract class Block : IDisposable
    {
        public abstract nint Pointer { get; }
        public abstract void Dispose();
    }
}

/// <summary>Device memory of a CUDA context; uploads and the widening run on its stream.</summary>
internal sealed class CudaModelMemory(CudaContext context) : ModelMemory
{
    private readonly OrtMemoryInfo info = new("Cuda", OrtAllocatorType.DeviceAllocator, context.Device, OrtMemType.Default);

    public override OrtMemoryInfo Info => info;

    public override Block Allocate(long bytes) => new DeviceBlock(DeviceBuffer.Create(context, checked((ulong)bytes)));

    public override void Upload(ReadOnlySpan<long> values, nint destination) => context.CopyToDevice(values, destination);

    public override void WidenIds(nint source, nint destination, long count) => context.WidenIds(source, destination, count);

    public override void Dispose() => info.Dispose();

    private sealed class DeviceBlock(DeviceBuffer buffer) : Block
    {
        public override nint Pointer => buffer.Pointer;
        public override void Dispose() => buffer.Dispose();
    }
}

/// <summary>Host memory for ONNX Runtime's CPU provider: the device engine's binding code run where there is no GPU.</summary>
internal sealed class HostModelMemory : ModelMemory
{
    public override OrtMemoryInfo Info => OrtMemoryInfo.DefaultInstance;

    public override Block Allocate(long bytes) => new HostBlock(bytes);

    public override unsafe void Upload(ReadOnlySpan<long> values, nint destination) => values.CopyTo(new Span<long>((void*)destination, values.Length));

    public override unsafe void WidenIds(nint source, nint destination, long count)
    {
        int* from = (int*)source;
        long* to = (long*)destination;
        for (long i = 0; i < count; i++) to[i] = from[i];
    }

    private sealed unsafe class HostBlock(long bytes) : Block
    {
        private nint pointer = (nint)NativeMemory.AlignedAlloc(checked((nuint)bytes), 64);

        public override nint Pointer => pointer;

        public override void Dispose()
        {
            NativeMemory.AlignedFree((void*)pointer);
            pointer = 0;
        }
    }
}
