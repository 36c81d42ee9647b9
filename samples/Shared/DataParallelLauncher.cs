using System.Diagnostics;
using MambaGen.Cuda.Nccl;
using MambaGen.Training;
using Spectre.Console;

namespace MambaGen.Samples;

/// <summary>
/// <c>--gpus N</c>: the sample starts itself N times, one process per GPU of this machine, with the variables a
/// torchrun launch would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and NVLink multicast off
/// (NCCL_NVLS_ENABLE=0). Each child sees WORLD_SIZE and trains as that rank; rank 0 prints and writes the results.
/// A process started by another launcher with those variables set behaves the same way.
/// </summary>
internal static class DataParallelLauncher
{
    /// <summary>This process's place in a data-parallel run, or null when it trains alone (read once).</summary>
    public static DataParallelOptions? Rank { get; } = DataParallelOptions.FromEnvironment();

    /// <summary>True where results are printed and written: a lone process, or rank 0.</summary>
    public static bool IsResultRank => Rank is null || Rank.Rank == 0;

    /// <summary>On ranks other than 0 the console stays quiet: rank 0 speaks for the run.</summary>
    public static void SilenceOtherRanks()
    {
        if (!IsResultRank)
            AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null) });
    }

    /// <summary>
    /// Joins the run as this process's rank with <paramref name="model"/> (on cuda:LOCAL_RANK), or returns null when
    /// the process trains alone.
    /// </summary>
    public static IDataParallelGroup? Join(IMambaModel model) => Rank is null ? null : NcclDataParallelGroup.Join(Rank, model);

    /// <summary>
    /// Starts <paramref name="gpus"/> copies of this program with <paramref name="args"/> as ranks 0..gpus−1 and waits
    /// for them. When one fails, the others stop by themselves (NCCL's error or the collective timeout); any still
    /// running after that timeout are killed. Returns true when every rank succeeded.
    /// </summary>
    public static bool Launch(string[] args, int gpus, CancellationToken cancellationToken)
    {
        int port = TcpRendezvous.FreeLoopbackPort();
        var (program, prefix) = SelfCommand();
        AnsiConsole.MarkupLine(Markup.Escape($"Starting {gpus} ranks (one per GPU) on 127.0.0.1:{port} with NCCL_NVLS_ENABLE=0"));
        var ranks = new List<Process>();
        try
        {
            for (int rank = 0; rank < gpus; rank++)
            {
                var start = new ProcessStartInfo(program) { UseShellExecute = false };
                foreach (string argument in prefix.Concat(args)) start.ArgumentList.Add(argument);
                start.Environment[DataParallelOptions.RankVariable] = rank.ToString(System.Globalization.CultureInfo.InvariantCulture);
                start.Environment[DataParallelOptions.LocalRankVariable] = rank.ToString(System.Globalization.CultureInfo.InvariantCulture);
                start.Environment[DataParallelOptions.WorldSizeVariable] = gpus.ToString(System.Globalization.CultureInfo.InvariantCulture);
                start.Environment[DataParallelOptions.MasterAddressVariable] = "127.0.0.1";
                start.Environment[DataParallelOptions.MasterPortVariable] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
                start.Environment["NCCL_NVLS_ENABLE"] = "0";
                ranks.Add(Process.Start(start) ?? throw new InvalidOperationException($"Could not start rank {rank} ({program})."));
            }
            // The ranks inherit this environment, so their collective timeout is this one.
            var grace = int.TryParse(Environment.GetEnvironmentVariable(DataParallelOptions.TimeoutVariable), out int seconds) && seconds > 0
                ? TimeSpan.FromSeconds(seconds) : new DataParallelOptions().Timeout;
            Stopwatch? sinceFailure = null;
            while (ranks.Any(p => !p.HasExited))
            {
                Thread.Sleep(200);
                if (sinceFailure is null && ranks.Any(p => p.HasExited && p.ExitCode != 0)) sinceFailure = Stopwatch.StartNew();
                if (sinceFailure is not null && sinceFailure.Elapsed > grace + TimeSpan.FromSeconds(30))
                {
                    foreach (var process in ranks.Where(p => !p.HasExited)) process.Kill(entireProcessTree: true);
                }
            }
            var failed = ranks.Select((p, rank) => (Rank: rank, p.ExitCode)).Where(r => r.ExitCode != 0).ToList();
            if (failed.Count == 0) return true;
            // Ctrl+C reaches every rank; each saves its state and exits with 130, so that is an interruption, not a failure.
            if (cancellationToken.IsCancellationRequested && failed.All(r => r.ExitCode == 130)) return false;
            throw new InvalidOperationException($"Data-parallel run failed: {string.Join(", ", failed.Select(r => $"rank {r.Rank} exited with {r.ExitCode}"))}.");
        }
        finally
        {
            foreach (var process in ranks) process.Dispose();
        }
    }

    /// <summary>How to start this program again: its executable, or dotnet with its assembly when it runs under dotnet.</summary>
    private static (string Program, string[] Prefix) SelfCommand()
    {
        string process = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot tell which program to start for the ranks.");
        string name = Path.GetFileNameWithoutExtension(process);
        return name.Equals("dotnet", StringComparison.OrdinalIgnoreCase)
            ? (process, [typeof(DataParallelLauncher).Assembly.Location])
            : (process, []);
    }
}
