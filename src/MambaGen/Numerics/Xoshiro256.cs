namespace MambaGen.Numerics;

/// <summary>
/// xoshiro256** with a state that can be saved and restored exactly, so initialisation and data streams are
/// reproducible across runs and resumable bit-for-bit from a training checkpoint.
/// </summary>
public sealed class Xoshiro256
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>A stream seeded by <paramref name="seed"/>; equal seeds give equal streams.</summary>
    public Xoshiro256(ulong seed)
    {
        // SplitMix64 expands the seed so nearby seeds give unrelated streams.
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    private Xoshiro256(ulong s0, ulong s1, ulong s2, ulong s3) => (_s0, _s1, _s2, _s3) = (s0, s1, s2, s3);

    /// <summary>The four state words, for <see cref="FromState"/>.</summary>
    public ulong[] GetState() => [_s0, _s1, _s2, _s3];

    /// <summary>Continues a stream from a state <see cref="GetState"/> returned.</summary>
    public static Xoshiro256 FromState(ReadOnlySpan<ulong> state)
    {
        if (state.Length != 4) throw new ArgumentException($"A xoshiro256 state has 4 words, got {state.Length}.", nameof(state));
        if ((state[0] | state[1] | state[2] | state[3]) == 0) throw new ArgumentException("An all-zero xoshiro256 state is invalid.", nameof(state));
        return new Xoshiro256(state[0], state[1], state[2], state[3]);
    }

    /// <summary>An independent stream derived from this one's next output (used to give each worker its own stream).</summary>
    public Xoshiro256 Fork() => new(NextUInt64());

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [low, high).</summary>
    public double NextUniform(double low, double high) => low + (high - low) * NextDouble();

    /// <summary>Uniform integer in [0, bound) without modulo bias.</summary>
    public int NextInt(int bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound), bound, "bound must be positive.");
        ulong range = (ulong)bound;
        ulong limit = ulong.MaxValue - ulong.MaxValue % range;
        ulong r;
        do r = NextUInt64(); while (r >= limit);
        return (int)(r % range);
    }

    /// <summary>Standard normal sample (Box–Muller; one of the pair is discarded to keep the state simple to save).</summary>
    public double NextNormal()
    {
        double u1 = 1.0 - NextDouble(); // (0, 1]: log stays finite
        double u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
