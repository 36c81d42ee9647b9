using System.Text;
using MambaGen.Cuda;

namespace MambaGen.Tests.Cuda;

/// <summary>NVRTC compiles without a GPU, so these run on CI (Debian's NVRTC 11.8) as well as on the GPU machine.</summary>
public class NvrtcTests
{
    [NvrtcFact]
    public void Version_is_at_least_11_8_and_lists_sm_80_and_sm_90()
    {
        Assert.True(CudaRuntimeCompiler.Version >= new Version(11, 8), $"NVRTC {CudaRuntimeCompiler.Version}");
        Assert.Contains(80, CudaRuntimeCompiler.SupportedArchitectures);
        Assert.Contains(90, CudaRuntimeCompiler.SupportedArchitectures);
    }

    [NvrtcFact]
    public void Compiles_to_ptx_for_compute_80_and_90()
    {
        foreach (int arch in new[] { 80, 90 })
        {
            using var program = new CudaRuntimeCompiler(CudaTestKernels.Source, "kernels.cu");
            program.Compile($"--gpu-architecture=compute_{arch}");
            string ptx = Encoding.UTF8.GetString(program.GetPtx());
            Assert.Contains($".target sm_{arch}", ptx);
            Assert.Contains(".entry scale(", ptx);
            Assert.Contains(".entry reverse_tiles(", ptx);
            Assert.DoesNotContain('\0', ptx);
        }
    }

    [NvrtcFact]
    public void Compiles_to_cubin_for_sm_80_and_sm_90()
    {
        foreach (int arch in new[] { 80, 90 })
        {
            using var program = new CudaRuntimeCompiler(CudaTestKernels.Source, "kernels.cu");
            program.Compile($"--gpu-architecture=sm_{arch}");
            byte[] cubin = program.GetCubin();
            // A CUBIN is a 64-bit ELF file whose e_flags carry the SM version.
            Assert.Equal("\u007fELF"u8.ToArray(), cubin[..4]);
            Assert.Equal(2, cubin[4]); // ELFCLASS64
            Assert.Contains("scale"u8.ToArray(), Windows(cubin, 5));
        }
    }

    [NvrtcFact]
    public void Name_expression_gives_the_itanium_mangled_symbol()
    {
        using var program = new CudaRuntimeCompiler(CudaTestKernels.Source, "kernels.cu");
        program.AddNameExpression(CudaTestKernels.FillFloat4);
        program.AddNameExpression("fill<int, 2>");
        program.Compile("--gpu-architecture=compute_80");
        // void fill<float, 4>(float*, float, int) and void fill<int, 2>(int*, int, int), as c++filt decodes them.
        Assert.Equal("_Z4fillIfLi4EEvPT_S0_i", program.GetLoweredName(CudaTestKernels.FillFloat4));
        Assert.Equal("_Z4fillIiLi2EEvPT_S0_i", program.GetLoweredName("fill<int, 2>"));
        Assert.Contains(".entry _Z4fillIfLi4EEvPT_S0_i(", Encoding.UTF8.GetString(program.GetPtx()));
    }

    [NvrtcFact]
    public void A_syntax_error_throws_with_the_log_line_and_source_name()
    {
        const string broken = "extern \"C\" __global__ void broken(float* y)\n{\n    y[0] = undefined_name;\n}\n";
        using var program = new CudaRuntimeCompiler(broken, "broken_kernel.cu");
        var e = Assert.Throws<NvrtcCompilationException>(() => program.Compile("--gpu-architecture=compute_80"));
        Assert.Equal("broken_kernel.cu", e.SourceName);
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.ErrorName);
        // NVRTC prefixes each diagnostic with the source name and line: the undefined name is on line 3.
        Assert.Contains("broken_kernel.cu(3)", e.Log);
        Assert.Contains("undefined_name", e.Log);
        Assert.Contains("broken_kernel.cu(3)", e.Message);
        Assert.Contains("--gpu-architecture=compute_80", e.Message);
    }

    [NvrtcFact]
    public void An_unknown_option_throws_naming_the_call()
    {
        using var program = new CudaRuntimeCompiler(CudaTestKernels.Source, "kernels.cu");
        var e = Assert.Throws<CudaException>(() => program.Compile("--no-such-option"));
        Assert.Equal("nvrtcCompileProgram", e.Call);
        Assert.Equal("NVRTC_ERROR_INVALID_OPTION", e.ErrorName);
    }

    [NvrtcFact]
    public void Cache_hits_on_the_second_compile_and_rebuilds_a_corrupted_entry()
    {
        var directory = CudaTestKernels.NewCacheDirectory();
        try
        {
            var compiler = new KernelCompiler(directory);
            string[] expressions = [CudaTestKernels.FillFloat4];
            var first = compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Cubin, nameExpressions: expressions);
            Assert.False(first.FromCache);
            var entry = Assert.Single(Directory.GetFiles(directory));
            Assert.Empty(Directory.GetFiles(directory, "*.tmp"));

            var second = compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Cubin, nameExpressions: expressions);
            Assert.True(second.FromCache);
            Assert.Equal(first.Image, second.Image);
            Assert.Equal("_Z4fillIfLi4EEvPT_S0_i", second.LoweredNames[CudaTestKernels.FillFloat4]);

            // Flip one byte inside the image: the checksum no longer matches, so the entry is compiled again.
            byte[] bytes = File.ReadAllBytes(entry);
            bytes[bytes.Length / 2] ^= 0x5A;
            File.WriteAllBytes(entry, bytes);
            var afterCorruption = compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Cubin, nameExpressions: expressions);
            Assert.False(afterCorruption.FromCache);
            Assert.Equal(first.Image, afterCorruption.Image);

            // A truncated entry (a crash mid-write without the rename) is rebuilt too, and the rebuilt one hits.
            File.WriteAllBytes(entry, bytes[..20]);
            Assert.False(compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Cubin, nameExpressions: expressions).FromCache);
            Assert.True(compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Cubin, nameExpressions: expressions).FromCache);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [NvrtcFact]
    public void Cache_key_separates_architecture_kind_options_and_source()
    {
        var directory = CudaTestKernels.NewCacheDirectory();
        try
        {
            var compiler = new KernelCompiler(directory);
            compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Ptx);
            Assert.False(compiler.Compile(CudaTestKernels.Source, "kernels.cu", 90, CudaImageKind.Ptx).FromCache);
            Assert.False(compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Cubin).FromCache);
            Assert.False(compiler.Compile(CudaTestKernels.Source, "kernels.cu", 80, CudaImageKind.Ptx, ["-DEXTRA=1"]).FromCache);
            Assert.False(compiler.Compile(CudaTestKernels.Source + "\n", "kernels.cu", 80, CudaImageKind.Ptx).FromCache);
            Assert.Equal(5, Directory.GetFiles(directory).Length);
            Assert.True(compiler.Compile(CudaTestKernels.Source, "kernels.cu", 90, CudaImageKind.Ptx).FromCache);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static IEnumerable<byte[]> Windows(byte[] bytes, int width)
    {
        for (int i = 0; i + width <= bytes.Length; i++) yield return bytes[i..(i + width)];
    }
}
