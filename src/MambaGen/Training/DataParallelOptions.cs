using System.Globalization;

namespace MambaGen.Training;

/// <summary>
/// Where this process stands in a data-parallel run and how the ranks find each other: rank 0 listens on
/// <see cref="MasterPort"/> and every other rank connects to <see cref="MasterAddress"/>:<see cref="MasterPort"/>
/// (see <see cref="TcpRendezvous"/>). <see cref="FromEnvironment"/> reads the variables torchrun sets.
/// </summary>
public sealed record DataParallelOptions
{
    /// <summary>The environment variables <see cref="FromEnvironment"/> reads, named as torchrun names them.</summary>
    public const string RankVariable = "RANK", WorldSizeVariable = "WORLD_SIZE", LocalRankVariable = "LOCAL_RANK",
        MasterAddressVariable = "MASTER_ADDR", MasterPortVariable = "MASTER_PORT";

    /// <summary>Overrides <see cref="Timeout"/> (seconds) from the environment.</summary>
    public const string TimeoutVariable = "MAMBAGEN_DIST_TIMEOUT_S";

    /// <summary>This process's rank, 0 .. WorldSize − 1.</summary>
    public int Rank { get; init; }

    /// <summary>Processes in the run (one per GPU).</summary>
    public int WorldSize { get; init; } = 1;

    /// <summary>This process's rank on its host: the CUDA device ordinal it uses.</summary>
    public int LocalRank { get; init; }

    /// <summary>Host name or address of rank 0, reachable from every rank.</summary>
    public string MasterAddress { get; init; } = "127.0.0.1";

    /// <summary>TCP port rank 0 listens on for the rendezvous.</summary>
    public int MasterPort { get; init; } = 29500;

    /// <summary>
    /// How long the rendezvous waits for every rank, and how long one collective operation (an all-reduce) may take
    /// before the ranks conclude that a peer has died and stop.
    /// </summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        if (WorldSize < 1) throw new ArgumentOutOfRangeException(nameof(WorldSize), WorldSize, $"WorldSize must be >= 1, was {WorldSize}.");
        if (Rank < 0 || Rank >= WorldSize) throw new ArgumentOutOfRangeException(nameof(Rank), Rank, $"Rank must be in 0..{WorldSize - 1} (WorldSize {WorldSize}), was {Rank}.");
        if (LocalRank < 0) throw new ArgumentOutOfRangeException(nameof(LocalRank), LocalRank, $"LocalRank must be >= 0, was {LocalRank}.");
        if (MasterPort is < 1 or > 65535) throw new ArgumentOutOfRangeException(nameof(MasterPort), MasterPort, $"MasterPort must be in 1..65535, was {MasterPort}.");
        if (string.IsNullOrWhiteSpace(MasterAddress)) throw new ArgumentException("MasterAddress must name rank 0's host.", nameof(MasterAddress));
        if (Timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, $"Timeout must be positive, was {Timeout}.");
    }

    /// <summary>
    /// Reads RANK, WORLD_SIZE, LOCAL_RANK (default: RANK), MASTER_ADDR, MASTER_PORT and MAMBAGEN_DIST_TIMEOUT_S (default
    /// 300) from <paramref name="environment"/> (the process environment when null). Returns null when WORLD_SIZE
    /// is not set, i.e. the process was not launched as a rank. A value that is set but malformed or out of range
    /// throws, naming the variable.
    /// </summary>
    public static DataParallelOptions? FromEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (string.IsNullOrEmpty(environment(WorldSizeVariable))) return null;
        int Integer(string name, int? fallback)
        {
            string? text = environment(name);
            if (string.IsNullOrEmpty(text))
                return fallback ?? throw new ArgumentException($"The environment variable {name} is not set; a data-parallel rank needs it (with {WorldSizeVariable} set).");
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value))
                throw new ArgumentException($"The environment variable {name} is '{text}'; expected a non-negative integer.");
            return value;
        }
        int rank = Integer(RankVariable, null);
        var options = new DataParallelOptions
        {
            Rank = rank,
            WorldSize = Integer(WorldSizeVariable, null),
            LocalRank = Integer(LocalRankVariable, rank),
            MasterAddress = environment(MasterAddressVariable) is { Length: > 0 } address ? address : "127.0.0.1",
            MasterPort = Integer(MasterPortVariable, 29500),
            Timeout = TimeSpan.FromSeconds(Integer(TimeoutVariable, 300)),
        };
        options.Validate();
        return options;
    }
}
