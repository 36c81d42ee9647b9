using System.Runtime.CompilerServices;
using System.Text;

namespace MambaGen.Generators.Tests.Infrastructure;

/// <summary>
/// Snapshot assertions with Verify's file conventions (the Verify packages are not available here):
/// <c>{TestClass}.{TestMethod}#{Hint}.verified.{extension}</c> beside the test's source file, where
/// <c>{TestClass}</c> is the source file's name (one test class per file, named like it). A mismatch writes
/// <c>.received.{extension}</c> next to it (git-ignored) and fails with the first differing lines. A missing
/// verified file fails too, so CI never accepts silently. Set <c>MAMBAGEN_ACCEPT_SNAPSHOTS=1</c> to write the
/// received text as the verified file instead, then review the diff and commit it.
/// </summary>
public static class Snapshot
{
    public const string AcceptVariable = "MAMBAGEN_ACCEPT_SNAPSHOTS";

    private const int ContextLines = 3;

    public static void Verify(
        string text,
        string hint,
        string extension = "cs",
        [CallerFilePath] string sourceFile = "",
        [CallerMemberName] string testMethod = "") =>
        Verify(text, hint, extension, Environment.GetEnvironmentVariable(AcceptVariable) == "1", sourceFile, testMethod);

    /// <summary>The comparison itself, with the accept switch passed in (so tests of the helper need not set it process-wide).</summary>
    internal static void Verify(string text, string hint, string extension, bool accept, string sourceFile, string testMethod)
    {
        // The compiler records the test's path in the source tree, so snapshots are found from bin/ too.
        var directory = Path.GetDirectoryName(sourceFile)!;
        var stem = Path.Combine(directory, $"{Path.GetFileNameWithoutExtension(sourceFile)}.{testMethod}#{hint}");
        var verifiedPath = $"{stem}.verified.{extension}";
        var receivedPath = $"{stem}.received.{extension}";
        var received = NormalizeNewlines(text);

        if (accept)
        {
            File.WriteAllText(verifiedPath, received, new UTF8Encoding(false));
            File.Delete(receivedPath);
            return;
        }

        if (!File.Exists(verifiedPath))
        {
            File.WriteAllText(receivedPath, received, new UTF8Encoding(false));
            Assert.Fail($"No verified snapshot {verifiedPath}. The output was written to {receivedPath}; " +
                        $"review it and run the tests with {AcceptVariable}=1 to accept it.");
        }

        var verified = NormalizeNewlines(File.ReadAllText(verifiedPath));
        if (verified == received)
        {
            File.Delete(receivedPath);
            return;
        }
        File.WriteAllText(receivedPath, received, new UTF8Encoding(false));
        Assert.Fail($"Snapshot {verifiedPath} differs from the output (written to {receivedPath}); " +
                    $"run with {AcceptVariable}=1 to accept it.\n{DiffExcerpt(verified, received)}");
    }

    /// <summary>The first differing line with a few lines around it, from both texts.</summary>
    public static string DiffExcerpt(string verified, string received)
    {
        var expected = verified.Split('\n');
        var actual = received.Split('\n');
        int first = 0;
        while (first < expected.Length && first < actual.Length && expected[first] == actual[first]) first++;
        var excerpt = new StringBuilder($"First difference at line {first + 1}:\n");
        void Lines(string label, string[] lines)
        {
            excerpt.Append(label).Append('\n');
            for (int i = Math.Max(0, first - ContextLines); i < Math.Min(lines.Length, first + ContextLines + 1); i++)
                excerpt.Append(i == first ? "> " : "  ").Append(i + 1).Append(": ").Append(lines[i]).Append('\n');
            if (first >= lines.Length) excerpt.Append("> (end of text)\n");
        }
        Lines("verified:", expected);
        Lines("received:", actual);
        return excerpt.ToString();
    }

    private static string NormalizeNewlines(string text) => text.Replace("\r\n", "\n");
}
