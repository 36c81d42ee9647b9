using MambaGen.Generators.Tests.Infrastructure;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators.Tests.Snapshots;

/// <summary>
/// The generated C# of representative variants, compared with the committed <c>*.verified.cs</c> files beside
/// this one. After a deliberate emitter change, run the tests with <c>MAMBAGEN_ACCEPT_SNAPSHOTS=1</c>, review the
/// diff of the verified files and commit them.
/// </summary>
public class EmitterSnapshotTests
{
    /// <summary>
    /// A model's three generated files: the backend-neutral half, the CPU backend and the CUDA backend (its kernels as
    /// CUDA C with the variant's constants as #defines, and the C# that hands them to the runtime).
    /// </summary>
    private static void VerifyAll(string declaration, string type, AdditionalText[]? files = null,
        [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        foreach (var part in new[] { "", ".Cpu", ".Cuda" })
            Snapshot.Verify(Generate(declaration, $"{type}{part}.g.cs", files ?? []), $"{type}{part}.g", testMethod: test);
    }

    private static string Generate(string declaration, string hintName, params AdditionalText[] files)
    {
        var outcome = Harness.Run(Harness.Compile($$"""
            using MambaGen;
            namespace Demo;

            {{declaration}}
            """), files);
        Assert.Empty(outcome.MambaIds);
        Assert.Null(outcome.Generator.Exception);
        return outcome.GeneratedSource(hintName) ?? throw new Xunit.Sdk.XunitException($"{hintName} was not generated");
    }

    [Fact]
    public void Default130M() => VerifyAll("""
            [MambaModel(DModel = 768, Layers = 24, Vocab = 50277, PadVocabMultiple = 8)]
            [SelectiveSsm]
            public partial class Mamba130M { }
            """, "Demo.Mamba130M");

    [Fact]
    public void FromHuggingFaceConfigFile() => VerifyAll("""
            [MambaModel(ConfigFile = "checkpoints/tiny/config.json")]
            public partial class Tiny { }
            """, "Demo.Tiny", files: [
            new InMemoryAdditionalText("/repo/app/checkpoints/tiny/config.json", """
                {
                  "model_type": "mamba", "hidden_size": 40, "intermediate_size": 80, "expand": 2, "state_size": 6,
                  "num_hidden_layers": 3, "vocab_size": 96, "conv_kernel": 3, "time_step_rank": 5,
                  "use_bias": true, "use_conv_bias": true, "layer_norm_epsilon": 1e-05, "residual_in_fp32": true,
                  "tie_word_embeddings": true, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0
                }
                """)]);

    [Fact]
    public void AblationWithoutSelectivity() => VerifyAll("""
            [MambaModel(DModel = 64, Layers = 2, Vocab = 32)]
            [SelectiveSsm(DState = 8, SelectiveDelta = false, SelectiveB = false, SelectiveC = false)]
            public partial class Lti { }
            """, "Demo.Lti");
}
