using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MambaGen.Training;

/// <summary>AdamW hyper-parameters other than the learning rate (which the schedule supplies per step).</summary>
public sealed record AdamWOptions
{
    /// <summary>Decay of the first moment.</summary>
    public float Beta1 { get; init; } = 0.9f;

    /// <summary>Decay of the second moment; 0.95 as in mamba_ssm's and GPT-style language-model training.</summary>
    public float Beta2 { get; init; } = 0.95f;

    /// <summary>Added to the denominator; keeps steps bounded where the second moment is tiny.</summary>
    public float Epsilon { get; init; } = 1e-8f;

    /// <summary>Decoupled weight decay, applied only to tensors whose layout entry has WeightDecay = true.</summary>
    public float WeightDecay { get; init; } = 0.1f;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first value out of range.</summary>
    public void Validate()
    {
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, $"Beta1 must be in [0, 1), was {Beta1}.");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, $"Beta2 must be in [0, 1), was {Beta2}.");
        if (!(Epsilon > 0 && float.IsFinite(Epsilon))) throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, $"Epsilon must be finite and > 0, was {Epsilon}.");
        if (!(WeightDecay >= 0 && float.IsFinite(WeightDecay))) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, $"WeightDecay must be finite and >= 0, was {WeightDecay}.");
    }
}

/// <summary>
/// AdamW (Loshchilov &amp; Hutter) over a model's flat parameter vector, with the update order of PyTorch's
/// <c>torch.optim.AdamW</c>: decay the weights by (1 − lr·wd), update the moments, then step by
/// lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε). Tensors the layout marks WeightDecay = false (A_log, D, norms, biases,
/// constant B/C) are not decayed. Moments share the parameters' layout; an update allocates nothing.
/// </summary>
public sealed class AdamW
{
    private readonly float[] _firstMoment;
    private readonly float[] _secondMoment;
    private readonly DecaySegment[] _segments;

    /// <summary>A run of consecutive tensors that share the weight-decay flag.</summary>
    private readonly record struct DecaySegment(int Offset, int Length, bool Decay);

    /// <summary>An optimizer with zero moments for parameters laid out by <paramref name="layout"/>.</summary>
    public AdamW(ParameterLayout layout, AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        Options = options ?? new AdamWOptions();
        Options.Validate();
        Length = layout.SingleSegmentLength;
        _firstMoment = new float[Length];
        _secondMoment = new float[Length];
        _segments = MergeSegments(layout);
    }

    /// <summary>The hyperparameters in use.</summary>
    public AdamWOptions Options { get; }

    /// <summary>Number of parameters (and of each moment).</summary>
    public int Length { get; }

    /// <summary>Updates applied so far (t in the bias corrections).</summary>
    public long StepCount { get; private set; }

    /// <summary>Running mean of the gradients (m), laid out like the parameters.</summary>
    public ReadOnlySpan<float> FirstMoment => _firstMoment;

    /// <summary>Running mean of the squared gradients (v), laid out like the parameters.</summary>
    public ReadOnlySpan<float> SecondMoment => _secondMoment;

    /// <summary>Applies one update to <paramref name="parameters"/> in place.</summary>
    public void Update(Span<float> parameters, ReadOnlySpan<float> gradients, float learningRate)
    {
        if (parameters.Length != Length)
            throw new ArgumentException($"Expected {Length} parameters, got {parameters.Length}.", nameof(parameters));
        if (gradients.Length != Length)
            throw new ArgumentException($"Expected {Length} gradients, got {gradients.Length}.", nameof(gradients));
        if (!(learningRate >= 0 && float.IsFinite(learningRate)))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, $"learningRate must be finite and >= 0, was {learningRate}.");

        long t = StepCount + 1;
        // Bias corrections in double: β^t for large t underflows gracefully and keeps full precision early on.
        double biasCorrection1 = 1 - Math.Pow(Options.Beta1, t);
        double biasCorrection2 = 1 - Math.Pow(Options.Beta2, t);
        var scalars = new UpdateScalars(
            Beta1: Options.Beta1,
            OneMinusBeta1: 1 - Options.Beta1,
            Beta2: Options.Beta2,
            OneMinusBeta2: 1 - Options.Beta2,
            StepSize: (float)(learningRate / biasCorrection1),
            InverseSqrtBiasCorrection2: (float)(1 / Math.Sqrt(biasCorrection2)),
            Epsilon: Options.Epsilon);
        float decayFactor = 1 - learningRate * Options.WeightDecay;

        foreach (var segment in _segments)
        {
            UpdateRange(
                parameters.Slice(segment.Offset, segment.Length),
                gradients.Slice(segment.Offset, segment.Length),
                _firstMoment.AsSpan(segment.Offset, segment.Length),
                _secondMoment.AsSpan(segment.Offset, segment.Length),
                segment.Decay ? decayFactor : 1f,
                scalars);
        }
        StepCount = t;
    }

    /// <summary>Restores moments and step count saved from an optimizer over the same layout.</summary>
    internal void Restore(long stepCount, ReadOnlySpan<float> firstMoment, ReadOnlySpan<float> secondMoment)
    {
        if (stepCount < 0) throw new ArgumentOutOfRangeException(nameof(stepCount), stepCount, "stepCount must be >= 0.");
        if (firstMoment.Length != Length || secondMoment.Length != Length)
            throw new ArgumentException($"Expected moments of {Length} values, got {firstMoment.Length} and {secondMoment.Length}.");
        firstMoment.CopyTo(_firstMoment);
        secondMoment.CopyTo(_secondMoment);
        StepCount = stepCount;
    }

    private readonly record struct UpdateScalars(
        float Beta1, float OneMinusBeta1, float Beta2, float OneMinusBeta2, float StepSize,
        float InverseSqrtBiasCorrection2, float Epsilon);

    private static void UpdateRange(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, float decayFactor, in UpdateScalars s)
    {
        // The vector body and the scalar tail perform the same IEEE operations in the same order (no fused
        // multiply-add), so an element's result does not depend on where it falls.
        ref float pRef = ref MemoryMarshal.GetReference(p);
        ref float gRef = ref MemoryMarshal.GetReference(g);
        ref float mRef = ref MemoryMarshal.GetReference(m);
        ref float vRef = ref MemoryMarshal.GetReference(v);
        int n = p.Length, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var decay = new Vector<float>(decayFactor);
            var beta1 = new Vector<float>(s.Beta1);
            var oneMinusBeta1 = new Vector<float>(s.OneMinusBeta1);
            var beta2 = new Vector<float>(s.Beta2);
            var oneMinusBeta2 = new Vector<float>(s.OneMinusBeta2);
            var stepSize = new Vector<float>(s.StepSize);
            var inverseSqrtBc2 = new Vector<float>(s.InverseSqrtBiasCorrection2);
            var epsilon = new Vector<float>(s.Epsilon);
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            {
                nuint at = (nuint)i;
                var grad = Vector.LoadUnsafe(ref gRef, at);
                var mNew = beta1 * Vector.LoadUnsafe(ref mRef, at) + oneMinusBeta1 * grad;
                var vNew = beta2 * Vector.LoadUnsafe(ref vRef, at) + oneMinusBeta2 * (grad * grad);
                var denominator = Vector.SquareRoot(vNew) * inverseSqrtBc2 + epsilon;
                var pNew = Vector.LoadUnsafe(ref pRef, at) * decay - stepSize * (mNew / denominator);
                mNew.StoreUnsafe(ref mRef, at);
                vNew.StoreUnsafe(ref vRef, at);
                pNew.StoreUnsafe(ref pRef, at);
            }
        }
        for (; i < n; i++)
        {
            float grad = Unsafe.Add(ref gRef, i);
            float mNew = s.Beta1 * Unsafe.Add(ref mRef, i) + s.OneMinusBeta1 * grad;
            float vNew = s.Beta2 * Unsafe.Add(ref vRef, i) + s.OneMinusBeta2 * (grad * grad);
            float denominator = MathF.Sqrt(vNew) * s.InverseSqrtBiasCorrection2 + s.Epsilon;
            Unsafe.Add(ref mRef, i) = mNew;
            Unsafe.Add(ref vRef, i) = vNew;
            Unsafe.Add(ref pRef, i) = Unsafe.Add(ref pRef, i) * decayFactor - s.StepSize * (mNew / denominator);
        }
    }

    private static DecaySegment[] MergeSegments(ParameterLayout layout)
    {
        var segments = new List<DecaySegment>();
        foreach (var tensor in layout.Tensors.OrderBy(t => t.Offset))
        {
            if (segments.Count > 0 && segments[^1].Decay == tensor.WeightDecay && segments[^1].Offset + (long)segments[^1].Length == tensor.Offset)
                segments[^1] = segments[^1] with { Length = segments[^1].Length + tensor.Length };
            else
                segments.Add(new DecaySegment((int)tensor.Offset, tensor.Length, tensor.WeightDecay));
        }
        return segments.ToArray();
    }
}
