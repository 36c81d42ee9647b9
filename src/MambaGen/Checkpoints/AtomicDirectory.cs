namespace MambaGen.Checkpoints;

/// <summary>
/// Replaces a directory as a whole: the new contents are written into a temporary sibling, which then takes the
/// target's place by renames. A failure while writing leaves the old directory exactly as it was, so a reader
/// never finds new files beside old ones.
/// </summary>
internal static class AtomicDirectory
{
    /// <summary>
    /// Calls <paramref name="writeContents"/> with an empty temporary directory beside <paramref name="path"/>, then
    /// puts that directory in <paramref name="path"/>'s place. Files and folders of an existing <paramref name="path"/>
    /// that <paramref name="writeContents"/> did not write (a tokenizer.json, say) are copied over first, so they
    /// survive. On any exception the target is untouched and the temporary directory removed.
    /// </summary>
    /// <remarks>
    /// .NET cannot exchange two directories in one step, so an existing target is renamed aside just before the
    /// new one is renamed in; a process killed between those two renames leaves the complete previous checkpoint at
    /// <c>path.old-*</c> and the complete new one at <c>path.tmp-*</c>.
    /// </remarks>
    public static void Replace(string path, Action<string> writeContents)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(writeContents);
        string target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        if (File.Exists(target))
            throw new IOException($"{target}: a file is in the way; a checkpoint is a directory.");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);

        string temporary = Sibling(target, "tmp");
        Directory.CreateDirectory(temporary);
        try
        {
            writeContents(temporary);
            if (Directory.Exists(target))
            {
                CopyMissing(target, temporary);
                string aside = Sibling(target, "old");
                Directory.Move(target, aside);
                try
                {
                    Directory.Move(temporary, target);
                }
                catch
                {
                    Directory.Move(aside, target);
                    throw;
                }
                TryDelete(aside);
            }
            else
            {
                Directory.Move(temporary, target);
            }
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>A random suffix keeps concurrent writers and stale leftovers of killed processes from colliding.</summary>
    private static string Sibling(string target, string kind) =>
        $"{target}.{kind}-{Convert.ToHexStringLower(Guid.NewGuid().ToByteArray(), 0, 8)}";

    /// <summary>Copies every file and folder of <paramref name="source"/> that <paramref name="destination"/> lacks.</summary>
    private static void CopyMissing(string source, string destination)
    {
        foreach (string file in Directory.EnumerateFiles(source))
        {
            string copy = Path.Combine(destination, Path.GetFileName(file));
            if (!File.Exists(copy) && !Directory.Exists(copy)) File.Copy(file, copy);
        }
        foreach (string folder in Directory.EnumerateDirectories(source))
        {
            string copy = Path.Combine(destination, Path.GetFileName(folder));
            if (File.Exists(copy)) continue;
            Directory.CreateDirectory(copy);
            CopyMissing(folder, copy);
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // The original failure (or the completed save) is what matters; a leftover folder is harmless.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
