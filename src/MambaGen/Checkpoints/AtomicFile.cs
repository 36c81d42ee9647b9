namespace MambaGen.Checkpoints;

/// <summary>
/// Replaces a file all at once: the content goes to a temporary sibling which is flushed to disk and then renamed
/// over the target, so a reader (or a crash) sees either the old file or the complete new one, never a partial one.
/// </summary>
public static class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="writeContent"/>, creating its folder if needed; on any
    /// exception the target is untouched and the temporary file removed.
    /// </summary>
    public static void Write(string path, Action<Stream> writeContent)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
        // A random suffix keeps concurrent writers (or a stale leftover from a killed process) from colliding.
        string temporaryPath = $"{fullPath}.tmp-{Convert.ToHexStringLower(Guid.NewGuid().ToByteArray(), 0, 8)}";
        try
        {
            using (var stream = new FileStream(temporaryPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                writeContent(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporaryPath, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(temporaryPath);
            throw;
        }
    }

    /// <summary>Writes <paramref name="text"/> as UTF-8 (no byte-order mark) atomically.</summary>
    public static void WriteText(string path, string text) =>
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false), leaveOpen: true);
            writer.Write(text);
        });

    private static void TryDelete(string temporaryPath)
    {
        try
        {
            File.Delete(temporaryPath);
        }
        catch (IOException)
        {
            // The original failure is the one worth reporting; a leftover temporary file is harmless.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
