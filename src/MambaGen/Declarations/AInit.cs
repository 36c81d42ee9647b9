namespace MambaGen;

/// <summary>How the diagonal state matrix A is initialised (the paper's Table 8).</summary>
public enum AInit
{
    /// <summary>A_n = −(n+1), mamba_ssm's default (S4D-Real).</summary>
    S4DReal = 0,

    /// <summary>A_n = −1/2 for every n.</summary>
    NegativeHalf = 1,

    /// <summary>A_log ~ 𝒩(0, 1), i.e. A_n = −exp(𝒩(0, 1)).</summary>
    Random = 2,
}
