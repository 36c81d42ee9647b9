using MambaGen.Numerics;

namespace MambaGen.Tests.Training;

/// <summary>
/// A tiny hand-written stand-in for a generated model, so the training runtime can be tested without generated
/// code. It uses three tensors of a real <see cref="ParameterLayout"/>: the embedding E (decayed), norm_f's weight w
/// and layer 0's D (not decayed). At position t: h = E[x_t] ⊙ w + D ⊙ E[x_{t−1}] (the second term only for t > 0),
/// logits = E·h. The gradient is written out by hand; a finite-difference test checks it. Forward/backward
/// allocate nothing (scratch buffers are made once).
/// </summary>
internal sealed class FakeLinearModel : IMambaModel
{
    private readonly double[] _hidden;
    private readonly double[] _hiddenGradient;
    private readonly double[] _logits;
    private readonly int _embedding, _norm, _mix;

    public FakeLinearModel(int vocab, ulong seed, bool selectiveB = true)
    {
        Shape = new MambaShape
        {
            DModel = 4, Layers = 1, Vocab = vocab, DState = 2, Expand = 1, DInner = 4, DtRank = 1, ConvKernel = 2,
            SelectiveB = selectiveB,
        };
        Parameters = new MambaParameters(new ParameterLayout(Shape));
        var random = new Xoshiro256(seed);
        foreach (ref float value in Parameters.Values.AsSpan()) value = (float)random.NextNormal();
        _embedding = (int)Parameters.Layout.Embedding;
        _norm = (int)Parameters.Layout.NormF;
        _mix = (int)Parameters.Layout.LayerOffsets[0].D;
        _hidden = new double[Shape.DModel];
        _hiddenGradient = new double[Shape.DModel];
        _logits = new double[vocab];
    }

    public MambaShape Shape { get; }
    public MambaParameters Parameters { get; }

    /// <summary>It computes on the CPU only.</summary>
    public Device Device => Device.Cpu;

    public IMambaModel To(Device device) =>
        device == Device.Cpu ? this : throw new NotSupportedException($"The fake model runs on the CPU only, not on {device}.");

    public void Dispose() { }

    /// <summary>When set, ForwardBackward reports this loss instead (to test divergence handling).</summary>
    public float? ForcedLoss { get; set; }

    public float[] Forward(int[] tokens, int batch)
    {
        int length = tokens.Length / batch, vocab = Shape.Vocab;
        var result = new float[tokens.Length * vocab];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < length; t++)
            {
                Hidden(tokens, b * length, t);
                Logits();
                for (int v = 0; v < vocab; v++) result[(b * length + t) * vocab + v] = (float)_logits[v];
            }
        return result;
    }

    public float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, Span<float> gradients)
    {
        gradients.Clear();
        int length = tokens.Length / batch, vocab = Shape.Vocab, d = Shape.DModel;
        int scored = 0;
        foreach (int target in targets) if (target >= 0) scored++;
        if (scored == 0) return 0;
        var p = Parameters.Values;
        double lossSum = 0;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < length; t++)
            {
                int target = targets[b * length + t];
                if (target < 0) continue;
                Hidden(tokens, b * length, t);
                Logits();
                double max = double.NegativeInfinity, sum = 0;
                foreach (double logit in _logits) max = Math.Max(max, logit);
                for (int v = 0; v < vocab; v++) sum += Math.Exp(_logits[v] - max);
                lossSum += max + Math.Log(sum) - _logits[target];
                Array.Clear(_hiddenGradient);
                for (int v = 0; v < vocab; v++)
                {
                    // ∂loss/∂logit_v = (softmax_v − [v = target]) / scored
                    double g = (Math.Exp(_logits[v] - max) / sum - (v == target ? 1 : 0)) / scored;
                    for (int k = 0; k < d; k++)
                    {
                        gradients[_embedding + v * d + k] += (float)(g * _hidden[k]);
                        _hiddenGradient[k] += g * p[_embedding + v * d + k];
                    }
                }
                int current = tokens[b * length + t];
                for (int k = 0; k < d; k++)
                {
                    gradients[_embedding + current * d + k] += (float)(_hiddenGradient[k] * p[_norm + k]);
                    gradients[_norm + k] += (float)(_hiddenGradient[k] * p[_embedding + current * d + k]);
                }
                if (t > 0)
                {
                    int previous = tokens[b * length + t - 1];
                    for (int k = 0; k < d; k++)
                    {
                        gradients[_embedding + previous * d + k] += (float)(_hiddenGradient[k] * p[_mix + k]);
                        gradients[_mix + k] += (float)(_hiddenGradient[k] * p[_embedding + previous * d + k]);
                    }
                }
            }
        return ForcedLoss ?? (float)(lossSum / scored);
    }

    private void Hidden(ReadOnlySpan<int> tokens, int sequenceStart, int t)
    {
        var p = Parameters.Values;
        int d = Shape.DModel, current = tokens[sequenceStart + t];
        for (int k = 0; k < d; k++)
        {
            _hidden[k] = (double)p[_embedding + current * d + k] * p[_norm + k];
            if (t > 0) _hidden[k] += (double)p[_mix + k] * p[_embedding + tokens[sequenceStart + t - 1] * d + k];
        }
    }

    private void Logits()
    {
        var p = Parameters.Values;
        int d = Shape.DModel;
        for (int v = 0; v < Shape.Vocab; v++)
        {
            double sum = 0;
            for (int k = 0; k < d; k++) sum += p[_embedding + v * d + k] * _hidden[k];
            _logits[v] = sum;
        }
    }
}
