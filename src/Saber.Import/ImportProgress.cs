namespace Saber.Import;

/// <summary>How far an import has come: checkpoint bytes copied out of the total, and where it is.</summary>
/// <param name="BytesDone">Tensor bytes of the checkpoint read, converted and written so far.</param>
/// <param name="BytesTotal">Tensor bytes of the whole checkpoint.</param>
/// <param name="CurrentFile">The safetensors file being read (file name).</param>
/// <param name="CurrentTensor">The tensor being copied.</param>
public readonly record struct ImportProgress(long BytesDone, long BytesTotal, string CurrentFile, string CurrentTensor);
