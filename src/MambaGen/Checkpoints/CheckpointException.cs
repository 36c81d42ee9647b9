namespace MambaGen.Checkpoints;

/// <summary>
/// A checkpoint, safetensors file or config.json is malformed or does not fit the model it is loaded into.
/// The message names the file, the tensor key or config field, and the expected versus the actual value.
/// </summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates the exception with a message that names the file, key or field.</summary>
    public CheckpointException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the I/O or parse error that caused it.</summary>
    public CheckpointException(string message, Exception innerException) : base(message, innerException) { }
}
