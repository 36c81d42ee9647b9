using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MambaGen.Training;

/// <summary>
/// The start of a data-parallel run: every rank meets rank 0 over TCP and receives one payload that rank 0 made
/// (for NCCL, the communicator's unique id). It is also a barrier: rank 0 answers only once all WorldSize − 1
/// other ranks have connected, so no rank enters the collective library while a peer is missing, and a rank that
/// never starts is reported by name instead of leaving the others hanging.
/// </summary>
/// <remarks>
/// Protocol (integers little-endian): a rank sends "MGRV", protocol version, its rank and the world size it was
/// given; rank 0 replies "MGRV", a status (0 = ok), then a length-prefixed payload, or on failure a length-prefixed
/// UTF-8 reason. Rank 0 listens on every IPv4 interface at <see cref="DataParallelOptions.MasterPort"/>; the others
/// retry connecting to <see cref="DataParallelOptions.MasterAddress"/> until the timeout, since rank 0 may start later.
/// </remarks>
public static class TcpRendezvous
{
    private const int Magic = 0x5652474D; // "MGRV"
    private const int ProtocolVersion = 1;
    private const int MaxPayload = 1 << 20;

    /// <summary>
    /// A TCP port on the loopback interface that nothing listens on now, for a launcher that starts every rank on this
    /// host (the operating system picks it; another process could take it before rank 0 listens, so use it at once).
    /// </summary>
    public static int FreeLoopbackPort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        try
        {
            return ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        finally
        {
            probe.Stop();
        }
    }

    /// <summary>
    /// Runs the rendezvous for this rank. Rank 0 calls <paramref name="createPayload"/> once and hands its result to
    /// every rank; every rank returns it. Throws <see cref="TimeoutException"/> when the ranks do not all meet within
    /// <see cref="DataParallelOptions.Timeout"/>, and <see cref="InvalidDataException"/> when a peer disagrees about
    /// the run (another world size, a rank given twice, not a MambaGen rank).
    /// </summary>
    public static byte[] Exchange(DataParallelOptions options, Func<byte[]> createPayload)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(createPayload);
        options.Validate();
        var deadline = DateTime.UtcNow + options.Timeout;
        if (options.Rank != 0) return Join(options, deadline);
        var payload = createPayload();
        if (payload.Length > MaxPayload) throw new ArgumentException($"The rendezvous payload is {payload.Length} bytes; at most {MaxPayload} are sent.");
        if (options.WorldSize > 1) Serve(options, payload, deadline);
        return payload;
    }

    private static void Serve(DataParallelOptions options, byte[] payload, DateTime deadline)
    {
        var listener = new TcpListener(IPAddress.Any, options.MasterPort);
        try
        {
            listener.Start(options.WorldSize);
        }
        catch (SocketException e)
        {
            throw new IOException($"Rank 0 could not listen on TCP port {options.MasterPort} for the rendezvous: {e.Message}. Choose another MASTER_PORT.", e);
        }
        var peers = new Dictionary<int, TcpClient>();
        try
        {
            while (peers.Count < options.WorldSize - 1)
            {
                var remaining = deadline - DateTime.UtcNow;
                using var timeout = new CancellationTokenSource(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero);
                TcpClient client;
                try
                {
                    client = listener.AcceptTcpClientAsync(timeout.Token).AsTask().GetAwaiter().GetResult();
                }
                catch (OperationCanceledException)
                {
                    var missing = Enumerable.Range(1, options.WorldSize - 1).Where(rank => !peers.ContainsKey(rank));
                    throw new TimeoutException(
                        $"Rank 0 waited {options.Timeout.TotalSeconds:0.#} s on port {options.MasterPort} for the other ranks; " +
                        $"rank(s) {string.Join(", ", missing)} of {options.WorldSize} never joined. Check that they were started with the same " +
                        $"{DataParallelOptions.MasterAddressVariable}/{DataParallelOptions.MasterPortVariable} and {DataParallelOptions.WorldSizeVariable}.");
                }
                var (rank, problem) = ReadHello(client, options, deadline, peers);
                if (problem is not null)
                {
                    Reply(client, problem, []);
                    client.Dispose();
                    throw new InvalidDataException($"Rendezvous at rank 0: {problem}");
                }
                peers.Add(rank, client);
            }
            foreach (var client in peers.Values) Reply(client, null, payload);
        }
        catch (Exception e) when (e is TimeoutException or InvalidDataException)
        {
            foreach (var client in peers.Values)
            {
                try { Reply(client, $"rank 0 gave up: {e.Message}", []); }
                catch (IOException) { } // that peer is gone too; the error below is what matters
            }
            throw;
        }
        finally
        {
            foreach (var client in peers.Values) client.Dispose();
            listener.Stop();
        }
    }

    /// <summary>Reads a peer's greeting; returns its rank, or a reason to refuse it.</summary>
    private static (int Rank, string? Problem) ReadHello(TcpClient client, DataParallelOptions options, DateTime deadline, Dictionary<int, TcpClient> peers)
    {
        var stream = client.GetStream();
        stream.ReadTimeout = Milliseconds(deadline);
        Span<byte> hello = stackalloc byte[16];
        try
        {
            stream.ReadExactly(hello);
        }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            return (-1, $"a connection from {client.Client.RemoteEndPoint} sent no complete greeting ({e.Message}); is something else using port {options.MasterPort}?");
        }
        int magic = BinaryPrimitives.ReadInt32LittleEndian(hello);
        int version = BinaryPrimitives.ReadInt32LittleEndian(hello[4..]);
        int rank = BinaryPrimitives.ReadInt32LittleEndian(hello[8..]);
        int worldSize = BinaryPrimitives.ReadInt32LittleEndian(hello[12..]);
        if (magic != Magic) return (-1, $"a connection from {client.Client.RemoteEndPoint} is not a MambaGen rank; is something else using port {options.MasterPort}?");
        if (version != ProtocolVersion) return (-1, $"rank {rank} speaks rendezvous protocol {version}, rank 0 speaks {ProtocolVersion} (mixed MambaGen versions?).");
        if (worldSize != options.WorldSize) return (-1, $"rank {rank} was started with world size {worldSize}, rank 0 with {options.WorldSize}.");
        if (rank < 1 || rank >= worldSize) return (-1, $"a peer claims rank {rank}, outside 1..{worldSize - 1}.");
        if (peers.ContainsKey(rank)) return (-1, $"two processes claim rank {rank}.");
        return (rank, null);
    }

    private static void Reply(TcpClient client, string? problem, byte[] payload)
    {
        byte[] body = problem is null ? payload : Encoding.UTF8.GetBytes(problem);
        var message = new byte[12 + body.Length];
        BinaryPrimitives.WriteInt32LittleEndian(message, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(4), problem is null ? 0 : 1);
        BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(8), body.Length);
        body.CopyTo(message, 12);
        client.GetStream().Write(message);
    }

    private static byte[] Join(DataParallelOptions options, DateTime deadline)
    {
        string where = $"{options.MasterAddress}:{options.MasterPort}";
        using var client = Connect(options, where, deadline);
        var stream = client.GetStream();
        Span<byte> hello = stackalloc byte[16];
        BinaryPrimitives.WriteInt32LittleEndian(hello, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(hello[4..], ProtocolVersion);
        BinaryPrimitives.WriteInt32LittleEndian(hello[8..], options.Rank);
        BinaryPrimitives.WriteInt32LittleEndian(hello[12..], options.WorldSize);
        try
        {
            stream.Write(hello);
            stream.ReadTimeout = Milliseconds(deadline);
            Span<byte> header = stackalloc byte[12];
            stream.ReadExactly(header);
            int magic = BinaryPrimitives.ReadInt32LittleEndian(header);
            int status = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
            int length = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
            if (magic != Magic || length < 0 || length > MaxPayload)
                throw new InvalidDataException($"Rank {options.Rank}: the process at {where} is not a MambaGen rank 0.");
            var body = new byte[length];
            stream.ReadExactly(body);
            if (status != 0)
                throw new InvalidDataException($"Rank {options.Rank}: rank 0 at {where} refused the rendezvous: {Encoding.UTF8.GetString(body)}");
            return body;
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut } || DateTime.UtcNow >= deadline)
        {
            throw new TimeoutException(
                $"Rank {options.Rank} reached rank 0 at {where} but got no answer within {options.Timeout.TotalSeconds:0.#} s: " +
                "rank 0 answers once every rank has joined, so another rank has probably not started (or died).", e);
        }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            throw new IOException($"Rank {options.Rank}: the connection to rank 0 at {where} broke during the rendezvous ({e.Message}); rank 0 has probably stopped.", e);
        }
    }

    /// <summary>Connects to rank 0, retrying while it is not listening yet, until the deadline.</summary>
    private static TcpClient Connect(DataParallelOptions options, string where, DateTime deadline)
    {
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            var client = new TcpClient();
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(Math.Max(1, Milliseconds(deadline))));
                client.ConnectAsync(options.MasterAddress, options.MasterPort, timeout.Token).AsTask().GetAwaiter().GetResult();
                return client;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                client.Dispose();
                last = e;
                Thread.Sleep(TimeSpan.FromMilliseconds(100));
            }
        }
        throw new TimeoutException(
            $"Rank {options.Rank} could not reach rank 0 at {where} within {options.Timeout.TotalSeconds:0.#} s" +
            (last is null ? "" : $" (last attempt: {last.Message})") +
            $". Is rank 0 running, and do all ranks have the same {DataParallelOptions.MasterAddressVariable} and {DataParallelOptions.MasterPortVariable}?", last);
    }

    /// <summary>Milliseconds to <paramref name="deadline"/>, at least 1 (a socket timeout of 0 means forever).</summary>
    private static int Milliseconds(DateTime deadline) =>
        (int)Math.Clamp((deadline - DateTime.UtcNow).TotalMilliseconds, 1, int.MaxValue);
}
