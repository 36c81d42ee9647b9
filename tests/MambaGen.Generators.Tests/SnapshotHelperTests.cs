using MambaGen.Generators.Tests.Infrastructure;
using Xunit.Sdk;

namespace MambaGen.Generators.Tests;

/// <summary>The snapshot helper's own contract, exercised in a temporary directory.</summary>
public sealed class SnapshotHelperTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("mambagen-snapshots-").FullName;

    private string SourceFile => Path.Combine(_directory, "SomeTests.cs");

    private string Verified => Path.Combine(_directory, "SomeTests.Method#Hint.verified.cs");

    private string Received => Path.Combine(_directory, "SomeTests.Method#Hint.received.cs");

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private void Verify(string text, bool accept) => Snapshot.Verify(text, "Hint", "cs", accept, SourceFile, "Method");

    [Fact]
    public void MissingVerifiedFile_FailsAndWritesReceived()
    {
        var failure = Assert.Throws<FailException>(() => Verify("a\nb\n", accept: false));
        Assert.Contains("No verified snapshot", failure.Message);
        Assert.Equal("a\nb\n", File.ReadAllText(Received));
        Assert.False(File.Exists(Verified));
    }

    [Fact]
    public void Accepting_WritesVerifiedFile_WithUnixNewlines()
    {
        Verify("a\r\nb\r\n", accept: true);
        Assert.Equal("a\nb\n", File.ReadAllText(Verified));
        Verify("a\nb\n", accept: false);
        Assert.False(File.Exists(Received));
    }

    [Fact]
    public void Mismatch_FailsWithTheFirstDifferingLine_AndWritesReceived()
    {
        File.WriteAllText(Verified, "one\ntwo\nthree\nfour\n");
        var failure = Assert.Throws<FailException>(() => Verify("one\ntwo\nTHREE\nfour\n", accept: false));
        Assert.Contains("First difference at line 3", failure.Message);
        Assert.Contains("> 3: three", failure.Message);
        Assert.Contains("> 3: THREE", failure.Message);
        Assert.Equal("one\ntwo\nTHREE\nfour\n", File.ReadAllText(Received));
        Assert.Equal("one\ntwo\nthree\nfour\n", File.ReadAllText(Verified));
    }

    [Fact]
    public void Match_RemovesAStaleReceivedFile()
    {
        File.WriteAllText(Verified, "same\n");
        File.WriteAllText(Received, "old\n");
        Verify("same\n", accept: false);
        Assert.False(File.Exists(Received));
    }
}
