using MambaGen.Training;

namespace MambaGen.Tests.Training;

/// <summary>What a resumed run on the device must share with the uninterrupted one, bit for bit.</summary>
internal static class ResumeAssertions
{
    /// <summary>
    /// The loss curve, the parameters and AdamW's two moments of <paramref name="resumed"/> equal those of
    /// <paramref name="straight"/>: one device computes deterministically, so nothing may differ in any bit.
    /// </summary>
    public static void AssertSameRun(Trainer straight, Trainer resumed)
    {
        Assert.Equal(straight.LossHistory.ToArray(), resumed.LossHistory.ToArray());
        Assert.Equal(straight.Model.Parameters.Values, resumed.Model.Parameters.Values);
        var (m1, v1) = Moments(straight);
        var (m2, v2) = Moments(resumed);
        Assert.Equal(m1, m2);
        Assert.Equal(v1, v2);
    }

    private static (float[] First, float[] Second) Moments(Trainer trainer)
    {
        var first = new float[trainer.Model.Parameters.Values.Length];
        var second = new float[first.Length];
        trainer.DeviceOptimizer!.CopyMomentsToHost(first, second);
        return (first, second);
    }
}
