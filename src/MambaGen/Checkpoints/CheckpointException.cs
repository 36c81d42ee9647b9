namespace MambaGen.Checkpoints;

/// <summary>
/// A checkpoint, safetensors file or config.json is malformed or does not fit the model it is loaded into.
/// The message names the file, the tensor key or config field, and the expected versus the actual value.
/// </summary>
public sealed class CheckpointException : Exception
{
    public CheckpointException(string message) : base(message) { }

    public CheckpointException(string message, Exception innerException) : base(message, innerException) { }
}
