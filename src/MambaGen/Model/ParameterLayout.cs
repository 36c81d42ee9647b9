using System.Collections.Frozen;

namespace MambaGen;

/// <summary>One named tensor inside the flat parameter vector.</summary>
/// <param name="Key">Hugging Face checkpoint key, e.g. <c>backbone.layers.3.mixer.in_proj.weight</c>.</param>
/// <param name="Shape">Row-major shape as stored in the checkpoint.</param>
/// <param name="Offset">First element in the flat vector (beyond 2³¹ in models of more than 2³¹ parameters).</param>
/// <param name="WeightDecay">Whether AdamW decays it (not A_log, D, norms, biases, as mamba_ssm).</param>
public sealed record ParameterTensor(string Key, int[] Shape, long Offset, bool WeightDecay)
{
    /// <summary>Number of elements (the product of the shape); one tensor always fits one array.</summary>
    public int Length { get; } = Shape.Aggregate(1, (a, b) => checked(a * b));

    /// <summary>Index of the <see cref="ParameterLayout.Segments"/> entry the tensor lies in (tensors never cross one).</summary>
    public int Segment { get; init; }

    /// <summary>
    /// Whether every backend reads this matrix only through its products (in_proj, x_proj, out_proj, an untied
    /// lm_head), so a model kept 16-bit only (<see cref="Checkpoints.CheckpointLoadOptions.KeepSixteenBitWeights"/>)
    /// holds no fp32 copy of it.
    /// </summary>
    public bool ProductOnly { get; init; }

    /// <summary>The shape as messages print it, e.g. <c>[768, 16]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>Offsets of one layer's tensors in the flat vector; −1 where the variant has no such tensor.</summary>
public readonly record struct LayerOffsets(
    long Norm, long InProj, long InProjBias, long ConvWeight, long ConvBias, long XProj, long DtProjWeight, long DtProjBias,
    long ALog, long D, long B, long C, long OutProj, long OutProjBias);

/// <summary>One run of consecutive tensors of the flat vector that the host keeps in one array.</summary>
/// <param name="Start">Flat offset of the segment's first element.</param>
/// <param name="Length">Number of elements (at most <see cref="ParameterLayout.MaxSegmentLength"/>).</param>
public readonly record struct ParameterSegment(long Start, int Length);

/// <summary>
/// Where every parameter of a <see cref="MambaShape"/> lives in one flat vector, addressed by <c>long</c> offsets.
/// Parameters, gradients and optimizer moments share this layout. The host holds the vector in
/// <see cref="Segments"/>: consecutive tensors fill an array until the next one would pass
/// <see cref="MaxSegmentLength"/>, which then starts the next array; no tensor crosses a segment. Every model under
/// 2³¹ parameters is one segment (one array, as before); mamba-2.8b (2.77 B) is two. A GPU keeps the vector in one
/// allocation at the same offsets.
/// </summary>
public sealed class ParameterLayout
{
    private readonly FrozenDictionary<string, ParameterTensor> _byKey;

    /// <summary>The architecture laid out.</summary>
    public MambaShape Shape { get; }
    /// <summary>Every tensor, in the order they lie in the flat vector.</summary>
    public IReadOnlyList<ParameterTensor> Tensors { get; }
    /// <summary>Length of the flat vector (the number of parameters).</summary>
    public long TotalLength { get; }
    /// <summary>The host arrays the flat vector is split into, in order; they cover it without gaps.</summary>
    public IReadOnlyList<ParameterSegment> Segments { get; }
    /// <summary>Offset of the embedding (Vocab × D).</summary>
    public long Embedding { get; }
    /// <summary>Offsets of each layer's tensors.</summary>
    public IReadOnlyList<LayerOffsets> LayerOffsets { get; }
    /// <summary>Offset of the final RMSNorm weight.</summary>
    public long NormF { get; }
    /// <summary>Offset of the untied output head, −1 when tied to the embedding.</summary>
    public long LmHead { get; }

    /// <summary>The longest host array of one segment: .NET's largest array of 4-byte elements.</summary>
    public static int MaxSegmentLength => Array.MaxLength;

    /// <summary>
    /// Length of the flat vector when it is one segment, for the operations that keep whole vectors in one array
    /// (training's gradients and moments, the optimizers, training state files, NCCL buffers); a clear error otherwise.
    /// </summary>
    public int SingleSegmentLength => Segments.Count == 1 ? Segments[0].Length
        : throw new NotSupportedException(
            $"The {TotalLength:N0} parameters of this model lie in {Segments.Count} segments (more than one .NET array holds); " +
            "training and whole-vector operations need them in one. Inference (CPU and GPU) and checkpoints work at any size.");

    /// <summary>Hugging Face key of the embedding.</summary>
    public const string EmbeddingKey = "backbone.embeddings.weight";
    /// <summary>Hugging Face key of the final norm weight.</summary>
    public const string NormFKey = "backbone.norm_f.weight";
    /// <summary>Hugging Face key of an untied output head.</summary>
    public const string LmHeadKey = "lm_head.weight";
    /// <summary>Hugging Face key of tensor <paramref name="name"/> (e.g. <c>mixer.A_log</c>) in layer <paramref name="layer"/>.</summary>
    public static string LayerKey(int layer, string name) => $"backbone.layers.{layer}.{name}";

    /// <summary>Lays out every tensor <paramref name="shape"/> has; throws if a constant is out of range or one tensor would not fit an array.</summary>
    public ParameterLayout(MambaShape shape) : this(shape, MaxSegmentLength) { }

    /// <summary>The layout with segments of at most <paramref name="maxSegmentLength"/> elements (tests split small models with it).</summary>
    internal ParameterLayout(MambaShape shape, int maxSegmentLength)
    {
        shape.Validate();
        Shape = shape;
        var tensors = new List<ParameterTensor>();
        var segments = new List<ParameterSegment>();
        long offset = 0, segmentStart = 0;
        long Add(string key, bool decay, params int[] dims) => AddTensor(key, decay, productOnly: false, dims);
        long AddProduct(string key, params int[] dims) => AddTensor(key, decay: true, productOnly: true, dims);
        long AddTensor(string key, bool decay, bool productOnly, int[] dims)
        {
            long length;
            try { length = new ParameterTensor(key, dims, 0, decay).Length; }
            catch (OverflowException) { throw new ArgumentException($"Tensor '{key}' of shape [{string.Join(", ", dims)}] has more elements than one array holds.", nameof(shape)); }
            if (length > maxSegmentLength)
                throw new ArgumentException($"Tensor '{key}' has {length} elements; a segment holds at most {maxSegmentLength}.", nameof(shape));
            if (offset + length - segmentStart > maxSegmentLength)
            {
                segments.Add(new ParameterSegment(segmentStart, (int)(offset - segmentStart)));
                segmentStart = offset;
            }
            var t = new ParameterTensor(key, dims, offset, decay) { Segment = segments.Count, ProductOnly = productOnly };
            tensors.Add(t);
            offset += length;
            return t.Offset;
        }

        int d = shape.DModel, ed = shape.DInner, n = shape.DState, r = shape.DtRank, k = shape.ConvKernel;
        Embedding = Add(EmbeddingKey, true, shape.Vocab, d);
        var layers = new LayerOffsets[shape.Layers];
        for (int i = 0; i < shape.Layers; i++)
        {
            string P(string name) => LayerKey(i, name);
            long norm = Add(P("norm.weight"), false, d);
            long inProj = AddProduct(P("mixer.in_proj.weight"), 2 * ed, d);
            long inProjBias = shape.ProjBias ? Add(P("mixer.in_proj.bias"), false, 2 * ed) : -1;
            long convWeight = Add(P("mixer.conv1d.weight"), true, ed, 1, k);
            long convBias = shape.ConvBias ? Add(P("mixer.conv1d.bias"), false, ed) : -1;
            long xProj = shape.XProjRows > 0 ? AddProduct(P("mixer.x_proj.weight"), shape.XProjRows, ed) : -1;
            long dtWeight = shape.SelectiveDelta ? Add(P("mixer.dt_proj.weight"), true, ed, r) : -1;
            long dtBias = Add(P("mixer.dt_proj.bias"), false, ed);
            long aLog = Add(P("mixer.A_log"), false, ed, n);
            long dSkip = Add(P("mixer.D"), false, ed);
            long b = shape.SelectiveB ? -1 : Add(P("mixer.B"), false, ed, n);
            long c = shape.SelectiveC ? -1 : Add(P("mixer.C"), false, ed, n);
            long outProj = AddProduct(P("mixer.out_proj.weight"), d, ed);
            long outProjBias = shape.ProjBias ? Add(P("mixer.out_proj.bias"), false, d) : -1;
            layers[i] = new LayerOffsets(norm, inProj, inProjBias, convWeight, convBias, xProj, dtWeight, dtBias,
                aLog, dSkip, b, c, outProj, outProjBias);
        }
        LayerOffsets = layers;
        NormF = Add(NormFKey, false, d);
        LmHead = shape.TieEmbeddings ? -1 : AddProduct(LmHeadKey, shape.Vocab, d);
        segments.Add(new ParameterSegment(segmentStart, (int)(offset - segmentStart)));
        Tensors = tensors;
        Segments = segments;
        TotalLength = offset;
        _byKey = tensors.ToFrozenDictionary(t => t.Key);
    }

    /// <summary>
    /// The <paramref name="length"/> elements at flat <paramref name="offset"/> of a whole vector in one array (the
    /// gradients and moments of training, whose layouts are one segment).
    /// </summary>
    public static Span<float> Part(Span<float> vector, long offset, int length) =>
        offset <= int.MaxValue ? vector.Slice((int)offset, length)
        : throw new ArgumentOutOfRangeException(nameof(offset), offset, "A vector in one array has no element beyond 2³¹.");

    /// <summary>Finds the tensor with checkpoint key <paramref name="key"/>.</summary>
    public bool TryGet(string key, out ParameterTensor tensor) => _byKey.TryGetValue(key, out tensor!);

    /// <summary>The tensor with checkpoint key <paramref name="key"/>; throws naming the key if there is none.</summary>
    public ParameterTensor this[string key] =>
        _byKey.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"The model has no parameter '{key}'.");
}
