using BenchmarkDotNet.Running;
using MambaGen.Benchmarks;

// `--quick`: a Stopwatch pass over everything with a printed table (a couple of minutes on 2 cores).
// Anything else goes to BenchmarkDotNet, e.g. `--filter *Gemm*`.
if (args.Contains("--quick"))
    QuickRun.Run(QuickOptions.Parse(args));
else
    BenchmarkSwitcher.FromAssembly(typeof(GemmBenchmarks).Assembly).Run(args);
