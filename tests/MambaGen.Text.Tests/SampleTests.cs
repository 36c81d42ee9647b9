using System.Diagnostics;
using MambaGen.Generation;

namespace MambaGen.Text.Tests;

/// <summary>
/// Runs samples/TextGeneration as a user would (a separate process) on a checkpoint written here: random weights of
/// <see cref="FixtureVocabModel"/>'s shape plus the trained tokenizer fixture. Its text must be what TextGenerator
/// gives for the same checkpoint and options in this process.
/// </summary>
public sealed class SampleTests : IDisposable
{
    private readonly TempDirectory _checkpoint = new();

    public SampleTests()
    {
        FixtureVocabModel.Create(seed: 7).Save(_checkpoint.Path);
        File.Copy(TokenizerFixture.TokenizerPath, Path.Combine(_checkpoint.Path, "tokenizer.json"));
    }

    public void Dispose() => _checkpoint.Dispose();

    private static (int ExitCode, string Out, string Error) RunSample(string? standardInput, params string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "TextGeneration.dll"));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        process.StandardInput.Write(standardInput ?? "");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(120_000), "the sample did not finish within 2 minutes");
        return (process.ExitCode, output.Result, error.Result);
    }

    [Fact]
    public void StreamsTheSameTextAsTextGeneratorAndReportsSpeeds()
    {
        const string prompt = "The quick brown fox";
        var (exit, output, error) = RunSample(null, _checkpoint.Path, prompt, "--max-new-tokens", "20", "--temperature", "0.9", "--seed", "4", "--ignore-eos");
        Assert.True(exit == 0, error);
        var generator = new TextGenerator(FixtureVocabModel.Load(_checkpoint.Path), TokenizerFixture.Tokenizer);
        string expected = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 20, Temperature = 0.9f, Seed = 4, StopAtEndOfSequence = false });
        Assert.Equal(prompt + expected + Environment.NewLine, output);
        Assert.Contains($"prefill: {TokenizerFixture.Tokenizer.Encode(prompt).Length} tokens", error);
        Assert.Contains("decode: 19 tokens", error);
        Assert.Contains("tokens/s", error);
    }

    [Fact]
    public void ReadsThePromptFromStandardInput()
    {
        var (exit, output, error) = RunSample("Hello world", _checkpoint.Path, "--max-new-tokens", "5");
        Assert.True(exit == 0, error);
        var generator = new TextGenerator(FixtureVocabModel.Load(_checkpoint.Path), TokenizerFixture.Tokenizer);
        Assert.Equal("Hello world" + generator.Generate("Hello world", new GenerationOptions { MaxNewTokens = 5 }) + Environment.NewLine, output);
    }

    [Fact]
    public void AnUndeclaredShapeSaysHowToDeclareIt()
    {
        using var other = new TempDirectory();
        foreach (var file in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(AppContext.BaseDirectory, "fixtures", "hf-tiny-a", file), Path.Combine(other.Path, file));
        File.Copy(TokenizerFixture.TokenizerPath, Path.Combine(other.Path, "tokenizer.json"));
        var (exit, _, error) = RunSample(null, other.Path, "x");
        Assert.Equal(1, exit);
        Assert.Contains("does not declare", error);
        Assert.Contains("ConfigFile", error);
    }

    [Fact]
    public void CudaAndBadValuesAreClearErrorsAndHelpListsTheFlags()
    {
        // On a machine with a GPU this generates there; without one the error says what is missing.
        var (exit, _, error) = RunSample(null, _checkpoint.Path, "x", "--device", "cuda", "--max-new-tokens", "3");
        if (MambaGen.Cuda.CudaContext.IsAvailable(out var reason)) Assert.True(exit == 0, error);
        else
        {
            Assert.Equal(1, exit);
            Assert.Contains("CUDA", error);
            Assert.DoesNotContain("   at ", error); // a message, not a stack trace
        }
        (exit, _, error) = RunSample(null, _checkpoint.Path, "x", "--device", "gpu");
        Assert.Equal(1, exit);
        Assert.Contains("'gpu'", error);
        (exit, _, error) = RunSample(null, _checkpoint.Path, "x", "--top-p", "1.5");
        Assert.Equal(1, exit);
        Assert.Contains("TopP", error);
        var (helpExit, help, _) = RunSample(null, "--help");
        Assert.Equal(0, helpExit);
        foreach (var flag in new[] { "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--repetition-penalty", "--seed", "--stop", "--device", "--half" })
            Assert.Contains(flag, help);
        (exit, _, error) = RunSample(null, _checkpoint.Path, "x", "--half", "fp8");
        Assert.Equal(1, exit);
        Assert.Contains("fp8", error);
        (exit, _, error) = RunSample(null, _checkpoint.Path, "x", "--half", "bf16", "--device", "cuda");
        Assert.Equal(1, exit);
        Assert.Contains("cuda:bf16", error);
    }

    [Theory]
    [InlineData("bf16")]
    [InlineData("fp16")]
    public void DecodesFromSixteenBitWeightsLikeTheModelsOwnOption(string format)
    {
        const string prompt = "Once upon a time";
        var (exit, output, error) = RunSample(null, _checkpoint.Path, prompt, "--max-new-tokens", "12", "--half", format, "--ignore-eos");
        Assert.True(exit == 0, error);
        Assert.Contains($"decoding from {format} weights", error);
        var model = FixtureVocabModel.Load(_checkpoint.Path);
        model.UseHalfPrecisionWeights(format == "bf16" ? MambaGen.Cpu.HalfPrecision.BFloat16 : MambaGen.Cpu.HalfPrecision.Float16);
        var generator = new TextGenerator(model, TokenizerFixture.Tokenizer);
        string expected = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 12, StopAtEndOfSequence = false });
        Assert.Equal(prompt + expected + Environment.NewLine, output);
    }
}
