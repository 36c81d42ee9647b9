using MambaGen.Cuda.Interop;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

/// <summary>
/// The data-parallel start-up that needs no GPU: the TCP rendezvous over loopback with several ranks, its timeouts
/// and refusals, the torchrun-style environment, and the message when NCCL is missing.
/// </summary>
public sealed class RendezvousTests
{
    private static DataParallelOptions Rank(int rank, int worldSize, int port, double timeoutSeconds = 20) => new()
    {
        Rank = rank, WorldSize = worldSize, LocalRank = rank, MasterAddress = "127.0.0.1", MasterPort = port,
        Timeout = TimeSpan.FromSeconds(timeoutSeconds),
    };

    [Fact]
    public async Task EveryRankReceivesRankZerosPayloadWhateverTheOrderTheyStartIn()
    {
        const int worldSize = 4;
        int port = TcpRendezvous.FreeLoopbackPort();
        var payload = Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 3)).ToArray();
        int created = 0;
        // The other ranks start first and must retry until rank 0 listens.
        var tasks = Enumerable.Range(1, worldSize - 1)
            .Select(rank => Task.Run(() => TcpRendezvous.Exchange(Rank(rank, worldSize, port), () => throw new InvalidOperationException("only rank 0 creates"))))
            .ToList();
        await Task.Delay(300);
        tasks.Insert(0, Task.Run(() => TcpRendezvous.Exchange(Rank(0, worldSize, port), () => { Interlocked.Increment(ref created); return payload; })));
        var payloads = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(payloads, received => Assert.Equal(payload, received));
        Assert.Equal(1, created);
    }

    [Fact]
    public void ARankWithoutRankZeroTimesOutNamingTheAddress()
    {
        int port = TcpRendezvous.FreeLoopbackPort();
        var error = Assert.Throws<TimeoutException>(() => TcpRendezvous.Exchange(Rank(1, 2, port, timeoutSeconds: 1), () => []));
        Assert.Contains($"127.0.0.1:{port}", error.Message);
        Assert.Contains("MASTER_ADDR", error.Message);
    }

    [Fact]
    public async Task RankZeroTimesOutNamingTheRanksThatNeverJoined()
    {
        int port = TcpRendezvous.FreeLoopbackPort();
        var joined = Task.Run(() => Record.Exception(() => TcpRendezvous.Exchange(Rank(2, 3, port, timeoutSeconds: 20), () => [])));
        var error = Assert.Throws<TimeoutException>(() => TcpRendezvous.Exchange(Rank(0, 3, port, timeoutSeconds: 2), () => [1, 2, 3]));
        Assert.Contains("rank(s) 1 of 3 never joined", error.Message);
        // The rank that did join is told why rather than left waiting.
        var joinedError = await joined.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains("never joined", joinedError!.Message);
    }

    [Fact]
    public async Task RanksThatDisagreeAboutTheWorldSizeAreRefused()
    {
        int port = TcpRendezvous.FreeLoopbackPort();
        var peer = Task.Run(() => Record.Exception(() => TcpRendezvous.Exchange(Rank(1, 3, port), () => [])));
        var error = Assert.Throws<InvalidDataException>(() => TcpRendezvous.Exchange(Rank(0, 2, port), () => [9]));
        Assert.Contains("world size 3, rank 0 with 2", error.Message);
        var peerError = await peer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.IsType<InvalidDataException>(peerError);
        Assert.Contains("refused", peerError!.Message);
    }

    [Fact]
    public void AWorldOfOneNeedsNoNetwork()
    {
        // Port 1 cannot be listened on by an ordinary user: a world of one must not try.
        var options = Rank(0, 1, 1);
        Assert.Equal(new byte[] { 5 }, TcpRendezvous.Exchange(options, () => [5]));
    }

    [Fact]
    public void TheTorchrunEnvironmentIsReadAndCheckedByName()
    {
        var environment = new Dictionary<string, string>
        {
            ["RANK"] = "3", ["WORLD_SIZE"] = "4", ["MASTER_ADDR"] = "node7", ["MASTER_PORT"] = "29400", ["LOCAL_RANK"] = "1",
            ["MAMBAGEN_DIST_TIMEOUT_S"] = "42",
        };
        var options = DataParallelOptions.FromEnvironment(name => environment.GetValueOrDefault(name))!;
        Assert.Equal(new DataParallelOptions { Rank = 3, WorldSize = 4, LocalRank = 1, MasterAddress = "node7", MasterPort = 29400, Timeout = TimeSpan.FromSeconds(42) }, options);

        Assert.Null(DataParallelOptions.FromEnvironment(_ => null));
        environment.Remove("LOCAL_RANK");
        Assert.Equal(3, DataParallelOptions.FromEnvironment(name => environment.GetValueOrDefault(name))!.LocalRank);
        environment["RANK"] = "x";
        Assert.Contains("RANK is 'x'", Assert.Throws<ArgumentException>(() => DataParallelOptions.FromEnvironment(name => environment.GetValueOrDefault(name))).Message);
        environment["RANK"] = "4";
        Assert.Contains("Rank must be in 0..3", Assert.Throws<ArgumentOutOfRangeException>(() => DataParallelOptions.FromEnvironment(name => environment.GetValueOrDefault(name))).Message);
        environment.Remove("RANK");
        Assert.Contains("RANK is not set", Assert.Throws<ArgumentException>(() => DataParallelOptions.FromEnvironment(name => environment.GetValueOrDefault(name))).Message);
    }

    [Fact]
    public void AMissingNcclLibrarySaysWhatWasTriedAndHowToGetIt()
    {
        string empty = Directory.CreateTempSubdirectory("mambagen-no-nccl-").FullName;
        try
        {
            var error = Assert.Throws<CudaLibraryNotFoundException>(() => CudaLibrary.Locate(CudaLibraryKind.Nccl, [empty], searchLoaderPath: false, []));
            Assert.Equal(CudaLibraryKind.Nccl, error.Library);
            Assert.Contains(Path.Combine(empty, "libnccl.so.2"), error.Message);
            Assert.Contains("NCCL", error.Message);
            Assert.Contains("nvidia-nccl", error.Message);
            Assert.Contains(CudaLibrary.NcclPathVariable, error.Message);
        }
        finally
        {
            Directory.Delete(empty);
        }
    }
}
