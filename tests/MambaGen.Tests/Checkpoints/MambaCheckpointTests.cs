using MambaGen.Checkpoints;

namespace MambaGen.Tests.Checkpoints;

public class MambaCheckpointTests
{
    private static readonly MambaShape Tiny = new()
    {
        DModel = 6, Layers = 2, Vocab = 11, DState = 3, Expand = 2, DInner = 12, DtRank = 2, ConvKernel = 4,
    };

    [Fact]
    public void SaveThenLoadRestoresEveryParameterExactly()
    {
        var untiedAblation = Tiny with
        {
            TieEmbeddings = false, ProjBias = true, ConvBias = false, SelectiveDelta = false, SelectiveB = false, EosTokenId = 3,
        };
        foreach (var shape in new[] { Tiny, untiedAblation })
        {
            using var dir = new ScratchDirectory();
            var saved = RandomParameters(shape, seed: 7);
            MambaCheckpoint.Save(dir.Path, saved);

            Assert.Equal(["config.json", "model.safetensors"], dir.FileNames());
            var loaded = MambaCheckpoint.Load(dir.Path, shape);
            Assert.Equal(saved.Values, loaded.Values);
            Assert.Equal(shape, loaded.Shape);
            using var file = SafeTensorsFile.Open(dir.File("model.safetensors"));
            Assert.Equal(saved.Layout.Tensors.Select(t => t.Key).Order(StringComparer.Ordinal), file.Tensors.Keys.Order(StringComparer.Ordinal));
            Assert.Equal(!shape.TieEmbeddings, file.Tensors.ContainsKey("lm_head.weight"));
            Assert.Equal("pt", file.Metadata["format"]);
        }
    }

    [Fact]
    public void SaveCreatesTheDirectoryAndReplacesAnEarlierCheckpoint()
    {
        using var dir = new ScratchDirectory();
        string target = Path.Combine(dir.Path, "nested", "run");
        MambaCheckpoint.Save(target, RandomParameters(Tiny, seed: 1));
        var second = RandomParameters(Tiny, seed: 2);
        MambaCheckpoint.Save(target, second);

        Assert.Equal(["config.json", "model.safetensors"], Directory.GetFiles(target).Select(Path.GetFileName).Order());
        Assert.Equal(second.Values, MambaCheckpoint.Load(target, Tiny).Values);
    }

    [Fact]
    public void AFailedSaveLeavesThePreviousCheckpointWholeAndNoTemporaryFolders()
    {
        using var dir = new ScratchDirectory();
        string target = dir.File("run");
        var first = RandomParameters(Tiny, seed: 1);
        MambaCheckpoint.Save(target, first);
        File.WriteAllText(Path.Combine(target, "tokenizer.json"), "{}");
        byte[] weightsBefore = File.ReadAllBytes(Path.Combine(target, "model.safetensors"));
        byte[] configBefore = File.ReadAllBytes(Path.Combine(target, "config.json"));

        // The failure the per-file scheme got wrong: the new weights are written, then writing config.json fails.
        var second = RandomParameters(Tiny, seed: 2);
        var failure = Assert.Throws<IOException>(() => AtomicDirectory.Replace(target, temporary =>
        {
            MambaCheckpoint.WriteFiles(temporary, second);
            File.Delete(Path.Combine(temporary, "config.json"));
            throw new IOException("injected: config.json could not be written");
        }));
        Assert.Equal("injected: config.json could not be written", failure.Message);

        Assert.Equal(weightsBefore, File.ReadAllBytes(Path.Combine(target, "model.safetensors")));
        Assert.Equal(configBefore, File.ReadAllBytes(Path.Combine(target, "config.json")));
        Assert.Equal(["run"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
        Assert.Equal(first.Values, MambaCheckpoint.Load(target, Tiny).Values);
    }

    [Fact]
    public void SaveKeepsOtherFilesOfTheDirectory()
    {
        using var dir = new ScratchDirectory();
        MambaCheckpoint.Save(dir.Path, RandomParameters(Tiny, seed: 1));
        File.WriteAllText(dir.File("tokenizer.json"), "{\"model\": {}}");
        Directory.CreateDirectory(dir.File("extra"));
        File.WriteAllText(Path.Combine(dir.File("extra"), "notes.txt"), "kept");
        var second = RandomParameters(Tiny, seed: 2);

        MambaCheckpoint.Save(dir.Path, second);

        Assert.Equal(["config.json", "extra", "model.safetensors", "tokenizer.json"], dir.FileNames());
        Assert.Equal("{\"model\": {}}", File.ReadAllText(dir.File("tokenizer.json")));
        Assert.Equal("kept", File.ReadAllText(Path.Combine(dir.File("extra"), "notes.txt")));
        Assert.Equal(second.Values, MambaCheckpoint.Load(dir.Path, Tiny).Values);
    }

    [Fact]
    public void SaveOverAFileIsAClearError()
    {
        using var dir = new ScratchDirectory();
        File.WriteAllText(dir.File("run"), "not a directory");
        var error = Assert.Throws<IOException>(() => MambaCheckpoint.Save(dir.File("run"), RandomParameters(Tiny, seed: 1)));
        Assert.Contains($"{dir.File("run")}: a file is in the way", error.Message);
        Assert.Equal("not a directory", File.ReadAllText(dir.File("run")));
        Assert.Equal(["run"], dir.FileNames());
    }

    [Fact]
    public void LoadNamesBothFilesWhenConfigAndWeightsComeFromDifferentCheckpoints()
    {
        // config.json of another variant beside weights that fit the model type.
        using var dir = new ScratchDirectory();
        MambaCheckpoint.Save(dir.Path, RandomParameters(Tiny, seed: 1));
        MambaConfig.WriteHfConfig(dir.File("config.json"), Tiny with { DState = 4 });
        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        Assert.StartsWith($"{dir.File("config.json")}: state_size is 4 but the model type was generated with DState = 3.", error.Message);
        Assert.Contains($"Yet {dir.File("model.safetensors")} beside it holds exactly the tensors of the model type: the two files disagree", error.Message);

        // Weights of another variant beside a config that fits the model type.
        using var other = new ScratchDirectory();
        MambaCheckpoint.Save(other.Path, RandomParameters(Tiny with { DState = 4 }, seed: 1));
        MambaConfig.WriteHfConfig(other.File("config.json"), Tiny);
        error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(other.Path, Tiny));
        Assert.StartsWith($"{other.File("model.safetensors")}: tensor 'backbone.layers.0.mixer.x_proj.weight' has shape [10, 12] but the model type expects [8, 12].", error.Message);
        Assert.EndsWith($"{other.File("config.json")} beside it describes the model type, so the two files disagree (they come from different checkpoints).", error.Message);
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.PositiveInfinity, "Infinity")]
    [InlineData(float.NegativeInfinity, "-Infinity")]
    public void LoadRefusesNonFiniteWeightsNamingTensorAndPosition_UnlessAllowed(float bad, string shown)
    {
        using var dir = new ScratchDirectory();
        var parameters = RandomParameters(Tiny, seed: 1);
        // A_log of layer 1 is [DInner = 12, DState = 3]; flat index 7 is row 2, column 1.
        parameters["backbone.layers.1.mixer.A_log"][7] = bad;
        MambaCheckpoint.Save(dir.Path, parameters);

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        Assert.StartsWith($"{dir.File("model.safetensors")}: tensor 'backbone.layers.1.mixer.A_log' holds {shown} at flat index 7 (position [2, 1] of [12, 3]); weights must be finite.", error.Message);
        Assert.Contains("AllowNonFiniteWeights = true", error.Message);

        var loaded = MambaCheckpoint.Load(dir.Path, Tiny, new CheckpointLoadOptions { AllowNonFiniteWeights = true });
        Assert.Equal(parameters.Values, loaded.Values);
    }

    [Theory]
    [InlineData("eos_token_id", 16)]
    [InlineData("bos_token_id", -1)]
    [InlineData("pad_token_id", 1000)]
    public void LoadRefusesConfigTokenIdsOutsideTheVocabulary(string field, int id)
    {
        using var dir = new ScratchDirectory();
        MambaCheckpoint.Save(dir.Path, RandomParameters(Tiny, seed: 1));
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!.AsObject();
        json[field] = id;
        File.WriteAllText(dir.File("config.json"), json.ToJsonString());

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        // Tiny's vocabulary is 11 (ids 0..10).
        Assert.Equal($"{dir.File("config.json")}: {field} is {id}, outside the vocabulary of the model type (ids 0..10).", error.Message);
    }

    [Fact]
    public void LoadsF16AndBF16CheckpointsAsRoundedFp32()
    {
        foreach (var dtype in new[] { DType.F16, DType.BF16 })
        {
            using var dir = new ScratchDirectory();
            var reference = RandomParameters(Tiny, seed: 3);
            WriteCheckpoint(dir, Tiny, reference.Layout.Tensors.Select(t => new SafeTensor(t.Key, t.Shape, reference.Slice(t).ToArray(), dtype)));

            var loaded = MambaCheckpoint.Load(dir.Path, Tiny);
            // Expected values come from independent roundings: .NET's scalar Half cast for F16, and round-half-even
            // on the scaled significand in double for BF16. Both must match bit for bit.
            var expected = reference.Values.Select(v => dtype == DType.F16 ? (float)(Half)v : RoundToBFloat16(v)).ToArray();
            Assert.Equal(expected, loaded.Values);
        }
    }

    [Fact]
    public void LoadsMambaSsmCheckpointsWithTheirEmbeddingSpellingAndTiedHead()
    {
        using var dir = new ScratchDirectory();
        var shape = Tiny with { Vocab = 16 };
        var reference = RandomParameters(shape, seed: 4);
        var embedding = reference.Layout[ParameterLayout.EmbeddingKey];
        var tensors = reference.Layout.Tensors
            .Select(t => new SafeTensor(t.Key == ParameterLayout.EmbeddingKey ? MambaCheckpoint.MambaSsmEmbeddingKey : t.Key, t.Shape,
                reference.Slice(t).ToArray()))
            // mamba_ssm keeps the tied head as its own (identical) tensor.
            .Append(new SafeTensor(ParameterLayout.LmHeadKey, embedding.Shape, reference.Slice(embedding).ToArray()))
            .ToList();
        SafeTensorsWriter.Write(dir.File("model.safetensors"), tensors);
        File.WriteAllText(dir.File("config.json"), """
            {"d_model": 6, "n_layer": 2, "vocab_size": 11, "pad_vocab_size_multiple": 8,
             "ssm_cfg": {"d_state": 3, "d_conv": 4, "expand": 2, "dt_rank": 2}, "rms_norm": true, "residual_in_fp32": true}
            """);

        Assert.Equal(reference.Values, MambaCheckpoint.Load(dir.Path, shape).Values);
    }

    [Fact]
    public void LoadCarriesTheConfigTokenIds()
    {
        using var dir = new ScratchDirectory();
        MambaCheckpoint.Save(dir.Path, RandomParameters(Tiny with { BosTokenId = 0, EosTokenId = 9 }, seed: 5));

        var loaded = MambaCheckpoint.Load(dir.Path, Tiny with { EosTokenId = 1, PadTokenId = 2 });
        Assert.Equal(0, loaded.Shape.BosTokenId);
        Assert.Equal(9, loaded.Shape.EosTokenId);
        Assert.Equal(2, loaded.Shape.PadTokenId);
    }

    [Theory]
    [InlineData("DState", "state_size is 3 but the model type was generated with DState = 4")]
    [InlineData("DtRank", "time_step_rank is 2 but the model type was generated with DtRank = 1")]
    [InlineData("ProjBias", "use_bias is false but the model type was generated with ProjBias = true")]
    [InlineData("SelectiveB", "mambagen.selective_b is true but the model type was generated with SelectiveB = false")]
    [InlineData("TieEmbeddings", "tie_word_embeddings is true but the model type was generated with TieEmbeddings = false")]
    [InlineData("NormEpsilon", "layer_norm_epsilon is 1E-05 but the model type was generated with NormEpsilon = 1E-06")]
    public void LoadRejectsAConfigOfAnotherVariant(string field, string expected)
    {
        using var dir = new ScratchDirectory();
        MambaCheckpoint.Save(dir.Path, RandomParameters(Tiny, seed: 1));
        var other = field switch
        {
            "DState" => Tiny with { DState = 4 },
            "DtRank" => Tiny with { DtRank = 1 },
            "ProjBias" => Tiny with { ProjBias = true },
            "SelectiveB" => Tiny with { SelectiveB = false },
            "TieEmbeddings" => Tiny with { TieEmbeddings = false },
            "NormEpsilon" => Tiny with { NormEpsilon = 1e-6f },
            _ => throw new ArgumentOutOfRangeException(nameof(field)),
        };

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, other));
        Assert.Equal($"{dir.File("config.json")}: {expected}.", error.Message);
    }

    [Fact]
    public void MismatchesOfDefaultedFieldsSayTheFieldWasAbsent()
    {
        using var dir = new ScratchDirectory();
        File.WriteAllText(dir.File("config.json"), """{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 2, "vocab_size": 11, "state_size": 3, "time_step_rank": 2}""");

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny with { ProjBias = true }));
        Assert.EndsWith("config.json: use_bias is absent, read as false but the model type was generated with ProjBias = true.", error.Message);
        var ablation = Tiny with { SelectiveC = false };
        error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, ablation));
        Assert.EndsWith("mambagen.selective_c is absent, read as true but the model type was generated with SelectiveC = false.", error.Message);
    }

    [Fact]
    public void MissingTensorsAreNamed()
    {
        using var dir = new ScratchDirectory();
        var reference = RandomParameters(Tiny with { TieEmbeddings = false }, seed: 6);
        WriteCheckpoint(dir, reference.Shape, reference.Layout.Tensors
            .Where(t => t.Key is not ("backbone.layers.1.mixer.A_log" or "lm_head.weight"))
            .Select(t => new SafeTensor(t.Key, t.Shape, reference.Slice(t).ToArray())));

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, reference.Shape));
        Assert.Contains($"{dir.File("model.safetensors")}: missing tensors 'backbone.layers.1.mixer.A_log', 'lm_head.weight'", error.Message);
    }

    [Fact]
    public void UnexpectedTensorsAreNamed()
    {
        using var dir = new ScratchDirectory();
        var reference = RandomParameters(Tiny, seed: 6);
        WriteCheckpoint(dir, Tiny, reference.Layout.Tensors
            .Select(t => new SafeTensor(t.Key, t.Shape, reference.Slice(t).ToArray()))
            .Append(new SafeTensor("backbone.layers.2.norm.weight", [6], new float[6])));

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        Assert.Contains(": unexpected tensor 'backbone.layers.2.norm.weight'", error.Message);
        Assert.DoesNotContain("missing", error.Message);
    }

    [Fact]
    public void BothEmbeddingSpellingsAtOnceAreRejected()
    {
        using var dir = new ScratchDirectory();
        var reference = RandomParameters(Tiny, seed: 6);
        WriteCheckpoint(dir, Tiny, reference.Layout.Tensors
            .Select(t => new SafeTensor(t.Key, t.Shape, reference.Slice(t).ToArray()))
            .Append(new SafeTensor(MambaCheckpoint.MambaSsmEmbeddingKey, [11, 6], new float[66])));

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        Assert.Contains("both 'backbone.embeddings.weight' and 'backbone.embedding.weight' are present", error.Message);
    }

    [Fact]
    public void WrongShapesAreNamedWithBothShapes()
    {
        using var dir = new ScratchDirectory();
        var reference = RandomParameters(Tiny, seed: 6);
        WriteCheckpoint(dir, Tiny, reference.Layout.Tensors.Select(t => t.Key == "backbone.layers.0.mixer.A_log"
            ? new SafeTensor(t.Key, [3, 12], reference.Slice(t).ToArray())
            : new SafeTensor(t.Key, t.Shape, reference.Slice(t).ToArray())));

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        Assert.Equal($"{dir.File("model.safetensors")}: tensor 'backbone.layers.0.mixer.A_log' has shape [3, 12] but the model type expects [12, 3]. " +
            $"{dir.File("config.json")} beside it describes the model type, so the two files disagree (they come from different checkpoints).",
            error.Message);
    }

    [Fact]
    public void NonFloatParameterDtypesAreRejected()
    {
        using var dir = new ScratchDirectory();
        var layout = new ParameterLayout(Tiny);
        // Built by hand because the writer only produces F32/F16/BF16: norm_f stored as F64.
        var tensors = layout.Tensors.Select(t => t.Key == ParameterLayout.NormFKey
            ? (t.Key, "F64", t.Shape, RawSafeTensors.LittleEndian(new double[t.Length]))
            : (t.Key, "F32", t.Shape, RawSafeTensors.LittleEndian(new float[t.Length]))).ToArray();
        File.WriteAllBytes(dir.File("model.safetensors"), RawSafeTensors.File(tensors));
        MambaConfig.WriteHfConfig(dir.File("config.json"), Tiny);

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        Assert.Contains("tensor 'backbone.norm_f.weight' has dtype F64; parameters must be F32, F16 or BF16", error.Message);
    }

    [Fact]
    public void PickledCheckpointsAreRefusedWithConversionAdvice()
    {
        using var dir = new ScratchDirectory();
        File.WriteAllText(dir.File("config.json"), """{"d_model": 6, "n_layer": 2, "vocab_size": 11, "pad_vocab_size_multiple": 1, "ssm_cfg": {"d_state": 3, "dt_rank": 2}}""");
        File.WriteAllBytes(dir.File("pytorch_model.bin"), [0x80, 0x02]);

        var error = Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny));
        Assert.Contains("only pytorch_model.bin is present", error.Message);
        Assert.Contains("never loaded", error.Message);
        Assert.Contains("from safetensors.torch import save_file", error.Message);
        Assert.Contains(dir.File("model.safetensors"), error.Message);
    }

    [Fact]
    public void MissingDirectoryConfigAndWeightsAreClearErrors()
    {
        using var dir = new ScratchDirectory();
        string absent = dir.File("nothing-here");
        Assert.Equal($"{absent}: the checkpoint directory does not exist.",
            Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(absent, Tiny)).Message);
        Assert.Contains("there is no config.json",
            Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny)).Message);
        MambaConfig.WriteHfConfig(dir.File("config.json"), Tiny);
        Assert.Equal($"{dir.Path}: there is no model.safetensors.",
            Assert.Throws<CheckpointException>(() => MambaCheckpoint.Load(dir.Path, Tiny)).Message);
    }

    private static void WriteCheckpoint(ScratchDirectory dir, MambaShape shape, IEnumerable<SafeTensor> tensors)
    {
        SafeTensorsWriter.Write(dir.File("model.safetensors"), tensors.ToList());
        MambaConfig.WriteHfConfig(dir.File("config.json"), shape);
    }

    private static MambaParameters RandomParameters(MambaShape shape, int seed)
    {
        var random = new Random(seed);
        var parameters = new MambaParameters(new ParameterLayout(shape));
        // Away from zero so every value is a normal number in all three dtypes.
        for (int i = 0; i < parameters.Values.Length; i++)
            parameters.Values[i] = (float)((random.NextDouble() + 0.01) * (random.Next(2) == 0 ? -1 : 1));
        return parameters;
    }

    /// <summary>Nearest bfloat16 (8 significand bits), ties to even, computed on the scaled significand in double.</summary>
    private static float RoundToBFloat16(float value)
    {
        double unitInLastPlace = Math.ScaleB(1.0, Math.ILogB(value) - 7);
        return (float)(Math.Round(value / unitInLastPlace, MidpointRounding.ToEven) * unitInLastPlace);
    }
}
