using BenchmarkDotNet.Running;
using MambaGen.Benchmarks;

// `--quick`: a Stopwatch pass over everything with a printed table (a couple of minutes on 2 cores).
// Anything else goes to BenchmarkDotNet, e.g. `--filter *Gemm*`.
if (args.Any(arg => arg is "--help" or "-h" or "-?"))
{
    Console.WriteLine("""
        MambaGen benchmarks: GEMM shapes of Mamba's projections and the forward pass of a 130M-shaped model.

        Two modes:
          --quick            A Stopwatch pass over every item with a printed table and GFLOP/s against this machine's
                             FMA peak (a couple of minutes on 2 cores). Takes these flags too:
            --threads N      Threads to use, 1 to the number of logical CPUs (default: all).
            --shape TEXT     Only the items whose name contains TEXT.
            --seconds S      Time budget per item in seconds (default: 1.5).
          --decode           Decode tokens/s of the 130M shape at batch 1 with fp32, bfloat16 and half weights
                             (--steps N, --rounds N, --threads N).
          (anything else)    BenchmarkDotNet, with its statistics and reports; e.g. --filter *Gemm* or --list flat.

        Results are discussed in docs/benchmarks.md. BenchmarkDotNet's own options follow.

        """);
    BenchmarkSwitcher.FromAssembly(typeof(GemmBenchmarks).Assembly).Run(["--help"]);
}
else if (args.Contains("--decode"))
{
    DecodeRun.Run(args);
}
else if (args.Contains("--quick"))
{
    QuickRun.Run(QuickOptions.Parse(args));
}
else
{
    BenchmarkSwitcher.FromAssembly(typeof(GemmBenchmarks).Assembly).Run(args);
}
