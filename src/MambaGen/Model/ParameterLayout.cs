using System.Collections.Frozen;

namespace MambaGen;

/// <summary>One named tensor inside the flat parameter vector.</summary>
/// <param name="Key">Hugging Face checkpoint key, e.g. <c>backbone.layers.3.mixer.in_proj.weight</c>.</param>
/// <param name="Shape">Row-major shape as stored in the checkpoint.</param>
/// <param name="Offset">First element in the flat vector.</param>
/// <param name="WeightDecay">Whether AdamW decays it (not A_log, D, norms, biases, as mamba_ssm).</param>
public sealed record ParameterTensor(string Key, int[] Shape, int Offset, bool WeightDecay)
{
    /// <summary>Number of elements (the product of the shape).</summary>
    public int Length { get; } = Shape.Aggregate(1, (a, b) => a * b);

    /// <summary>The shape as messages print it, e.g. <c>[768, 16]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>Offsets of one layer's tensors in the flat vector; −1 where the variant has no such tensor.</summary>
public readonly record struct LayerOffsets(
    int Norm, int InProj, int InProjBias, int ConvWeight, int ConvBias, int XProj, int DtProjWeight, int DtProjBias,
    int ALog, int D, int B, int C, int OutProj, int OutProjBias);

/// <summary>
/// Where every parameter of a <see cref="MambaShape"/> lives in one flat fp32 vector. Parameters, gradients and
/// optimizer moments share this layout, so each is a single array.
/// </summary>
public sealed class ParameterLayout
{
    private readonly FrozenDictionary<string, ParameterTensor> _byKey;

    /// <summary>The architecture laid out.</summary>
    public MambaShape Shape { get; }
    /// <summary>Every tensor, in the order they lie in the flat vector.</summary>
    public IReadOnlyList<ParameterTensor> Tensors { get; }
    /// <summary>Length of the flat vector.</summary>
    public int TotalLength { get; }
    /// <summary>Offset of the embedding (Vocab × D).</summary>
    public int Embedding { get; }
    /// <summary>Offsets of each layer's tensors.</summary>
    public IReadOnlyList<LayerOffsets> LayerOffsets { get; }
    /// <summary>Offset of the final RMSNorm weight.</summary>
    public int NormF { get; }
    /// <summary>Offset of the untied output head, −1 when tied to the embedding.</summary>
    public int LmHead { get; }

    /// <summary>Hugging Face key of the embedding.</summary>
    public const string EmbeddingKey = "backbone.embeddings.weight";
    /// <summary>Hugging Face key of the final norm weight.</summary>
    public const string NormFKey = "backbone.norm_f.weight";
    /// <summary>Hugging Face key of an untied output head.</summary>
    public const string LmHeadKey = "lm_head.weight";
    /// <summary>Hugging Face key of tensor <paramref name="name"/> (e.g. <c>mixer.A_log</c>) in layer <paramref name="layer"/>.</summary>
    public static string LayerKey(int layer, string name) => $"backbone.layers.{layer}.{name}";

    /// <summary>Lays out every tensor <paramref name="shape"/> has; throws if a constant is out of range or the vector would not fit an array.</summary>
    public ParameterLayout(MambaShape shape)
    {
        shape.Validate();
        Shape = shape;
        var tensors = new List<ParameterTensor>();
        int offset = 0;
        int Add(string key, bool decay, params int[] dims)
        {
            var t = new ParameterTensor(key, dims, offset, decay);
            tensors.Add(t);
            offset = checked(offset + t.Length);
            return t.Offset;
        }

        int d = shape.DModel, ed = shape.DInner, n = shape.DState, r = shape.DtRank, k = shape.ConvKernel;
        Embedding = Add(EmbeddingKey, true, shape.Vocab, d);
        var layers = new LayerOffsets[shape.Layers];
        for (int i = 0; i < shape.Layers; i++)
        {
            string P(string name) => LayerKey(i, name);
            int norm = Add(P("norm.weight"), false, d);
            int inProj = Add(P("mixer.in_proj.weight"), true, 2 * ed, d);
            int inProjBias = shape.ProjBias ? Add(P("mixer.in_proj.bias"), false, 2 * ed) : -1;
            int convWeight = Add(P("mixer.conv1d.weight"), true, ed, 1, k);
            int convBias = shape.ConvBias ? Add(P("mixer.conv1d.bias"), false, ed) : -1;
            int xProj = shape.XProjRows > 0 ? Add(P("mixer.x_proj.weight"), true, shape.XProjRows, ed) : -1;
            int dtWeight = shape.SelectiveDelta ? Add(P("mixer.dt_proj.weight"), true, ed, r) : -1;
            int dtBias = Add(P("mixer.dt_proj.bias"), false, ed);
            int aLog = Add(P("mixer.A_log"), false, ed, n);
            int dSkip = Add(P("mixer.D"), false, ed);
            int b = shape.SelectiveB ? -1 : Add(P("mixer.B"), false, ed, n);
            int c = shape.SelectiveC ? -1 : Add(P("mixer.C"), false, ed, n);
            int outProj = Add(P("mixer.out_proj.weight"), true, d, ed);
            int outProjBias = shape.ProjBias ? Add(P("mixer.out_proj.bias"), false, d) : -1;
            layers[i] = new LayerOffsets(norm, inProj, inProjBias, convWeight, convBias, xProj, dtWeight, dtBias,
                aLog, dSkip, b, c, outProj, outProjBias);
        }
        LayerOffsets = layers;
        NormF = Add(NormFKey, false, d);
        LmHead = shape.TieEmbeddings ? -1 : Add(LmHeadKey, true, shape.Vocab, d);
        Tensors = tensors;
        TotalLength = offset;
        _byKey = tensors.ToFrozenDictionary(t => t.Key);
    }

    /// <summary>Finds the tensor with checkpoint key <paramref name="key"/>.</summary>
    public bool TryGet(string key, out ParameterTensor tensor) => _byKey.TryGetValue(key, out tensor!);

    /// <summary>The tensor with checkpoint key <paramref name="key"/>; throws naming the key if there is none.</summary>
    public ParameterTensor this[string key] =>
        _byKey.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"The model has no parameter '{key}'.");
}
