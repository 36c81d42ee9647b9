using MambaGen.Generators.Tests.Infrastructure;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators.Tests;

/// <summary>
/// The .NET Regex generator's robustness test, applied here: truncated versions of a valid source (both
/// attributes, many properties, a ConfigFile declaration, a nested class) go through the generator and the
/// analyzer, which must never throw. Two families: every prefix of the whole source (unterminated declarations),
/// and every prefix of each attribute list with the rest of the source kept after it, so the half-written
/// attribute still sits on a class and reaches the parser.
/// </summary>
public class TruncationTests
{
    private static readonly (string Text, bool IsAttributeList)[] Parts =
    [
        ("using MambaGen;\nnamespace Demo;\n", false),
        ("""
         [MambaModel(DModel = 64, Layers = 2, Vocab = 100, PadVocabMultiple = 8, NormEpsilon = 1e-5, TieEmbeddings = false)]
         [SelectiveSsm(DState = 8, Expand = 2, DtRank = 0, ConvKernel = 4, SelectiveB = false, AInit = AInit.NegativeHalf, ProjBias = true)]
         """, true),
        ("\npublic partial class Tiny { }\npublic partial class Outer { ", false),
        ("[MambaModel(ConfigFile = \"tiny/config.json\", DModel = 64)]", true),
        (" internal partial class FromConfig { } }\n", false),
    ];

    private static readonly string Source = string.Concat(Parts.Select(p => p.Text));

    private static readonly AdditionalText Config = new InMemoryAdditionalText("/repo/tiny/config.json",
        """{ "model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 128 }""");

    [Fact]
    public void TheUntruncatedSource_IsValid()
    {
        var full = Harness.Run(Harness.Compile(Source), [Config]);
        Assert.Empty(full.MambaIds);
        Assert.Equal(
            (from model in new[] { "Demo.Outer.FromConfig", "Demo.Tiny" } from suffix in Harness.FileSuffixes select model + suffix).Order(StringComparer.Ordinal),
            full.Generator.GeneratedSources.Select(s => s.HintName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void EveryPrefixOfTheSource_RunsWithoutFailure() =>
        AssertNoFailures(Enumerable.Range(0, Source.Length).Select(length => Source.Substring(0, length)));

    [Fact]
    public void EveryPrefixOfEachAttributeList_FollowedByTheRest_RunsWithoutFailure()
    {
        var variants = Parts
            .Select((part, index) => (part, index))
            .Where(p => p.part.IsAttributeList)
            .SelectMany(p => Enumerable.Range(0, p.part.Text.Length).Select(length =>
                string.Concat(Parts.Select((other, i) => i == p.index ? other.Text.Substring(0, length) + "\n" : other.Text))));
        AssertNoFailures(variants);
    }

    private static void AssertNoFailures(IEnumerable<string> sources)
    {
        var failures = new List<string>();
        // Both cores: each variant is an independent compilation.
        Parallel.ForEach(sources, source =>
        {
            var outcome = Harness.Run(Harness.Compile(source), [Config]);
            var problems = outcome.AnalyzerExceptions.Select(e => "analyzer threw " + e)
                .Concat(outcome.Generator.Exception is { } e ? ["generator threw " + e] : [])
                // AD0001: an analyzer crashed; CS8784/CS8785: a generator failed to initialise or run.
                .Concat(outcome.AnalyzerDiagnostics.Concat(outcome.GeneratorDiagnostics)
                    .Where(d => d.Id is "AD0001" or "CS8784" or "CS8785")
                    .Select(d => d.ToString()));
            foreach (var problem in problems)
                lock (failures) failures.Add($"{problem}\n--- source:\n{source}");
        });
        Assert.True(failures.Count == 0, $"{failures.Count} failures; first:\n{failures.FirstOrDefault()}");
    }
}
