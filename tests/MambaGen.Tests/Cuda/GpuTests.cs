using MambaGen.Checkpoints;
using MambaGen.Cuda;

namespace MambaGen.Tests.Cuda;

/// <summary>Driver, kernel and cuBLAS tests; they need a GPU and skip with the reason where there is none.</summary>
public sealed class GpuTests : IDisposable
{
    private readonly string _cacheDirectory = CudaTestKernels.NewCacheDirectory();

    public void Dispose() => Directory.Delete(_cacheDirectory, recursive: true);

    private (CudaContext Context, CudaModule Module, CompiledImage Image) LoadTestModule()
    {
        var context = new CudaContext(0);
        var image = new KernelCompiler(_cacheDirectory).CompileFor(context, CudaTestKernels.Source, "kernels.cu",
            nameExpressions: [CudaTestKernels.FillFloat4]);
        return (context, context.LoadModule(image.Image), image);
    }

    [GpuFact]
    public void Context_describes_the_device()
    {
        using var context = new CudaContext(0);
        Assert.False(string.IsNullOrWhiteSpace(context.DeviceName));
        Assert.InRange(context.ComputeCapability.Major, 5, 20);
        Assert.True(context.MultiprocessorCount > 0);
        Assert.True(context.MaxSharedMemoryPerBlockOptin >= context.MaxSharedMemoryPerBlock);
        Assert.Equal(32, context.WarpSize);
        var (free, total) = context.GetMemoryInfo();
        Assert.Equal(context.TotalMemory, total);
        Assert.InRange(free, 1, total);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new CudaContext(CudaContext.GetDeviceCount()));
        Assert.Contains("Device ordinals run from 0", e.Message);
    }

    [GpuFact]
    public void Copies_round_trip_host_device_device_host()
    {
        using var context = new CudaContext(0);
        var values = Enumerable.Range(0, 1001).Select(i => i * 0.25f - 7f).ToArray();
        using var first = new CudaDeviceVariable<float>(context, values);
        using var second = new CudaDeviceVariable<float>(context, values.Length);
        second.CopyToDevice(first);
        Assert.Equal(values, second.ToArray());

        // A partial copy at an offset touches only its elements.
        second.CopyToDevice([100f, 200f], offset: 999);
        var tail = new float[3];
        second.CopyToHost(tail, offset: 998);
        Assert.Equal([values[998], 100f, 200f], tail);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => second.CopyToHost(new float[3], offset: 999));
        Assert.Contains("[999, 1002)", e.Message);
    }

    [GpuFact]
    public void Memset_fills_bytes_and_words()
    {
        using var context = new CudaContext(0);
        using var bytes = new CudaDeviceVariable<byte>(context, 777);
        bytes.Memset((byte)0xAB);
        Assert.All(bytes.ToArray(), b => Assert.Equal(0xAB, b));

        using var floats = new CudaDeviceVariable<float>(context, 513);
        floats.Memset(BitConverter.SingleToUInt32Bits(1.5f));
        Assert.All(floats.ToArray(), f => Assert.Equal(1.5f, f));

        using var stream = new CudaStream(context);
        floats.MemsetAsync(BitConverter.SingleToUInt32Bits(-2f), stream);
        bytes.MemsetAsync((byte)7, stream);
        stream.Synchronize();
        Assert.All(floats.ToArray(), f => Assert.Equal(-2f, f));
        Assert.All(bytes.ToArray(), b => Assert.Equal(7, b));
        Assert.Throws<InvalidOperationException>(() => bytes.Memset(0u)); // 777 bytes is not a whole number of words
    }

    [GpuFact]
    public void Kernel_runs_and_a_templated_kernel_loads_by_its_lowered_name()
    {
        var (context, module, image) = LoadTestModule();
        using (context)
        using (module)
        {
            const int n = 1000;
            var x = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
            using var dx = new CudaDeviceVariable<float>(context, x);
            using var dy = new CudaDeviceVariable<float>(context, n);
            var scale = module.GetKernel("scale");
            scale.BlockDimensions = 128;
            scale.GridDimensions = (n + 127) / 128;
            scale.Run(dy, dx, 2.5f, n);
            Assert.Equal(x.Select(v => 2.5f * v).ToArray(), dy.ToArray());

            var fill = module.GetKernel(image.LoweredNames[CudaTestKernels.FillFloat4]);
            fill.BlockDimensions = 256;
            fill.GridDimensions = (n + 255) / 256;
            fill.Run(dy, 0.75f, n);
            Assert.All(dy.ToArray(), v => Assert.Equal(3f, v)); // value * Width = 0.75 * 4
        }
    }

    [GpuFact]
    public void Dynamic_shared_memory_above_48_KiB_needs_the_raised_limit()
    {
        var (context, module, _) = LoadTestModule();
        using (context)
        using (module)
        {
            const int threads = 1024, perThread = 16, tiles = 3;
            const int tile = threads * perThread; // 16384 floats = 64 KiB of shared memory per block
            var x = Enumerable.Range(0, tile * tiles).Select(i => (float)i).ToArray();
            using var dx = new CudaDeviceVariable<float>(context, x);
            using var dy = new CudaDeviceVariable<float>(context, x.Length);
            var reverse = module.GetKernel("reverse_tiles");
            reverse.BlockDimensions = threads;
            reverse.GridDimensions = tiles;
            reverse.DynamicSharedMemory = tile * sizeof(float);
            var refused = Assert.Throws<InvalidOperationException>(() => reverse.Run(dy, dx, perThread));
            Assert.Contains("raise MaxDynamicSharedMemory", refused.Message);

            reverse.MaxDynamicSharedMemory = tile * sizeof(float);
            reverse.Run(dy, dx, perThread);
            var expected = new float[x.Length];
            for (int t = 0; t < tiles; t++)
                for (int j = 0; j < tile; j++) expected[t * tile + j] = x[t * tile + tile - 1 - j];
            Assert.Equal(expected, dy.ToArray());
        }
    }

    [GpuFact]
    public void Events_time_work_on_a_stream()
    {
        using var context = new CudaContext(0);
        using var stream = new CudaStream(context);
        using var buffer = new CudaDeviceVariable<byte>(context, 256L << 20);
        using var start = new CudaEvent(context);
        using var end = new CudaEvent(context);
        start.Record(stream);
        for (int i = 0; i < 4; i++) buffer.MemsetAsync((byte)i, stream);
        end.Record(stream);
        end.Synchronize();
        float milliseconds = end.ElapsedMillisecondsSince(start);
        // 1 GiB of writes takes at least 1 GiB / (5 TB/s) ≈ 0.2 ms on any current GPU, and far less than 10 s.
        Assert.InRange(milliseconds, 0.1f, 10_000f);
    }

    [GpuFact]
    public void Async_copies_through_pinned_memory_on_a_stream()
    {
        var (context, module, _) = LoadTestModule();
        using (context)
        using (module)
        {
            const int n = 1 << 20;
            using var hostIn = new CudaPinnedHostMemory<float>(context, n);
            using var hostOut = new CudaPinnedHostMemory<float>(context, n);
            for (int i = 0; i < n; i++) hostIn.Span[i] = i % 977 - 300;
            using var dx = new CudaDeviceVariable<float>(context, n);
            using var dy = new CudaDeviceVariable<float>(context, n);
            using var stream = new CudaStream(context);
            var scale = module.GetKernel("scale");
            scale.BlockDimensions = 256;
            scale.GridDimensions = n / 256;

            dx.CopyToDeviceAsync(hostIn, stream);
            scale.Launch(stream, dy, dx, -0.5f, n);
            dy.CopyToHostAsync(hostOut, stream);
            stream.Synchronize();
            for (int i = 0; i < n; i++) Assert.Equal(-0.5f * (i % 977 - 300), hostOut.Span[i]);
        }
    }

    [GpuFact]
    public void A_captured_graph_replays_its_kernels()
    {
        var (context, module, _) = LoadTestModule();
        using (context)
        using (module)
        {
            const int n = 4096;
            using var data = new CudaDeviceVariable<float>(context, n);
            data.Memset(0u);
            using var stream = new CudaStream(context);
            var addOne = module.GetKernel("add_one");
            addOne.BlockDimensions = 256;
            addOne.GridDimensions = n / 256;

            stream.BeginCapture();
            addOne.Launch(stream, data, n);
            addOne.Launch(stream, data, n);
            using var graph = stream.EndCapture();
            stream.Synchronize();
            Assert.All(data.ToArray(), v => Assert.Equal(0f, v)); // capturing does not run anything

            using var exec = graph.Instantiate();
            for (int i = 0; i < 5; i++) exec.Launch(stream);
            stream.Synchronize();
            Assert.All(data.ToArray(), v => Assert.Equal(10f, v));
        }
    }

    [GpuFact]
    public void Out_of_memory_names_the_error_and_the_request_and_leaves_the_context_usable()
    {
        using var context = new CudaContext(0);
        long elements = context.TotalMemory; // floats: four times the device's memory
        var e = Assert.Throws<CudaException>(() => new CudaDeviceVariable<float>(context, elements));
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.ErrorName);
        Assert.Equal("cuMemAlloc_v2", e.Call);
        Assert.Contains($"Requested {elements * 4} bytes", e.Message);
        Assert.Contains("bytes are free", e.Message);

        using var small = new CudaDeviceVariable<int>(context, [1, 2, 3]);
        Assert.Equal([1, 2, 3], small.ToArray());
    }

    [GpuFact]
    public void Sgemm_matches_a_double_precision_reference()
    {
        using var context = new CudaContext(0);
        using var blas = new CublasHandle(context);
        const int m = 67, n = 45, k = 96;
        var random = new Random(11);
        // A is stored k×m (used transposed), B is k×n, C is m×n; all column-major.
        var a = RandomValues(random, k * m);
        var b = RandomValues(random, k * n);
        var c0 = RandomValues(random, m * n);
        using var da = new CudaDeviceVariable<float>(context, a);
        using var db = new CudaDeviceVariable<float>(context, b);
        using var dc = new CudaDeviceVariable<float>(context, c0);
        const float alpha = 0.75f, beta = -0.5f;
        blas.Sgemm(CublasOperation.Transpose, CublasOperation.None, m, n, k, alpha, da, k, db, k, beta, dc, m);
        var c = dc.ToArray();
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                double sum = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    double product = (double)a[i * k + p] * b[j * k + p];
                    sum += product;
                    magnitude += Math.Abs(product);
                }
                double expected = alpha * sum + beta * c0[j * m + i];
                // fp32 accumulation over k terms: |error| ≤ k·2⁻²⁴·Σ|a·b| ≈ 6e-6·Σ|a·b| for k = 96.
                Assert.True(Math.Abs(c[j * m + i] - expected) <= 1e-5 * (magnitude + Math.Abs(c0[j * m + i])),
                    $"C[{i},{j}] = {c[j * m + i]}, expected {expected}");
            }
        var wrongShape = Assert.Throws<ArgumentException>(() =>
            blas.Sgemm(CublasOperation.None, CublasOperation.None, m, n, k + 10, 1f, da, m, db, k + 10, 0f, dc, m));
        Assert.Contains("needs", wrongShape.Message);
    }

    [GpuFact]
    public void Bf16_gemm_with_fp32_accumulation_matches_a_double_precision_reference()
    {
        using var context = new CudaContext(0);
        using var stream = new CudaStream(context);
        using var blas = new CublasHandle(context, stream);
        const int m = 128, n = 96, k = 256, batch = 3;
        var random = new Random(5);
        // bf16 inputs: the reference uses the rounded values, so only the accumulation's error remains.
        var a = RandomValues(random, batch * m * k).Select(BFloat16.FromSingle).ToArray();
        var b = RandomValues(random, batch * k * n).Select(BFloat16.FromSingle).ToArray();
        using var da = new CudaDeviceVariable<ushort>(context, a);
        using var db = new CudaDeviceVariable<ushort>(context, b);
        using var dc = new CudaDeviceVariable<float>(context, batch * m * n);
        using var dcBf16 = new CudaDeviceVariable<ushort>(context, batch * m * n);

        // Batch 0 through GemmEx, all batches through the strided-batched call (fp32 and bf16 outputs).
        blas.GemmEx(CublasOperation.None, CublasOperation.None, m, n, k, 1f,
            da.DevicePointer, CudaDataType.BFloat16, m, db.DevicePointer, CudaDataType.BFloat16, k,
            0f, dc.DevicePointer, CudaDataType.Float32, m);
        stream.Synchronize();
        var single = dc.ToArray();
        blas.GemmStridedBatchedEx(CublasOperation.None, CublasOperation.None, m, n, k, 1f,
            da.DevicePointer, CudaDataType.BFloat16, m, m * k, db.DevicePointer, CudaDataType.BFloat16, k, k * n,
            0f, dc.DevicePointer, CudaDataType.Float32, m, m * n, batch);
        blas.GemmStridedBatchedEx(CublasOperation.None, CublasOperation.None, m, n, k, 1f,
            da.DevicePointer, CudaDataType.BFloat16, m, m * k, db.DevicePointer, CudaDataType.BFloat16, k, k * n,
            0f, dcBf16.DevicePointer, CudaDataType.BFloat16, m, m * n, batch);
        stream.Synchronize();
        var batched = dc.ToArray();
        var batchedBf16 = dcBf16.ToArray();

        static float Widen(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
        for (int q = 0; q < batch; q++)
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++)
                {
                    double sum = 0, magnitude = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double product = (double)Widen(a[q * m * k + p * m + i]) * Widen(b[q * k * n + j * k + p]);
                        sum += product;
                        magnitude += Math.Abs(product);
                    }
                    int index = q * m * n + j * m + i;
                    // fp32 accumulation: k·2⁻²⁴ ≈ 1.5e-5 relative to Σ|a·b| at k = 256; 1e-4 leaves room for the
                    // tensor cores' accumulation order yet is far below the error of unrounded inputs (up to 2⁻⁸ each).
                    double tolerance = 1e-4 * magnitude;
                    if (q == 0) Assert.True(Math.Abs(single[index] - sum) <= tolerance, $"GemmEx C[{i},{j}] = {single[index]}, expected {sum}");
                    Assert.True(Math.Abs(batched[index] - sum) <= tolerance, $"batch {q} C[{i},{j}] = {batched[index]}, expected {sum}");
                    // bf16 output adds one rounding to nearest with 8 significant bits: at most 2⁻⁸ relative.
                    Assert.True(Math.Abs(Widen(batchedBf16[index]) - sum) <= tolerance + Math.Abs(sum) * Math.Pow(2, -8),
                        $"bf16 batch {q} C[{i},{j}] = {Widen(batchedBf16[index])}, expected {sum}");
                }
    }

    private static float[] RandomValues(Random random, int count) =>
        Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
}
