using System.Reflection;
using System.Text;
using MambaGen.Cuda;
using MambaGen.Cuda.Backend;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// Finds every generated model type in some assemblies (each has a <c>CudaSource</c> constant) and compiles its CUDA C
/// with NVRTC to PTX, so a template change that breaks any declared variant fails CI, which has NVRTC but no GPU.
/// Shared by the runtime tests (the test variants) and the samples' tests (the samples' variants).
/// </summary>
internal static class DeclaredVariantKernels
{
    /// <summary>Ampere and Hopper: the oldest architecture the kernels target and the one they are tuned for.</summary>
    public static readonly int[] Architectures = [80, 90];

    /// <summary>Every kernel the backend launches (forward, training, decoding); each variant's PTX must define them all.</summary>
    public static readonly string[] EntryPoints =
    [
        "mamba_embed_fwd", "mamba_embed_bwd", "mamba_fill_broadcast", "mamba_take_last_state", "mamba_rmsnorm_fwd", "mamba_rmsnorm_bwd",
        "mamba_conv_fwd", "mamba_conv_bwd", "mamba_conv_bwd_weights", "mamba_scan_fwd", "mamba_scan_bwd",
        "mamba_scan_fwd_ends", "mamba_scan_fwd_wide", "mamba_scan_fwd_wide_ends", "mamba_scan_fwd_combine",
        "mamba_cross_entropy", "mamba_adamw", "mamba_alog_grad", "mamba_scaled_a", "mg_sum_slices", "mamba_to_activation",
        "mamba_sum_slices_to_activation", "mamba_sum_all", "mg_sumsq_partial_f64", "mg_sum_f64", "mg_scale_f32",
        "mamba_decode_conv", "mamba_decode_ssm", "mamba_decode_in_proj", "mamba_decode_rows", "mamba_decode_ssm_step",
        "mamba_decode_head", "mamba_decode_argmax",
    ];

    /// <summary>The two builds of every variant: fp32 activations, and bf16 activations (the bf16 compute mode).</summary>
    public static readonly (string Name, IReadOnlyList<string> Options)[] Builds =
        [("fp32", CudaMambaModel.CompileOptions), ("bf16", CudaMambaModel.BFloat16CompileOptions)];

    /// <summary>
    /// Each generated type (as <c>Assembly:Namespace.Type</c>) and its CUDA C, from the types declaring a constant
    /// <c>CudaSource</c> string.
    /// </summary>
    public static IReadOnlyList<(string Type, string Source)> Find(IEnumerable<Assembly> assemblies) =>
        [.. from assembly in assemblies
            from type in assembly.GetTypes()
            let field = type.GetField("CudaSource", BindingFlags.Public | BindingFlags.Static)
            where field is { IsLiteral: true } && field.FieldType == typeof(string)
            let name = $"{assembly.GetName().Name}:{type.FullName}"
            orderby name
            select (name, (string)field.GetRawConstantValue()!)];

    /// <summary>
    /// Compiles each distinct source for every architecture in <see cref="Architectures"/> in both <see cref="Builds"/> and
    /// checks its entry points.
    /// Returns one line per failure (empty when all compile); types whose kernels are textually identical compile once.
    /// </summary>
    public static List<string> CompileAll(IReadOnlyList<(string Type, string Source)> variants)
    {
        string cache = Directory.CreateTempSubdirectory("mambagen-variant-kernels-").FullName;
        try
        {
            var compiler = new KernelCompiler(cache);
            var failures = new List<string>();
            foreach (var group in variants.GroupBy(v => v.Source, StringComparer.Ordinal))
            {
                string names = string.Join(", ", group.Select(v => v.Type));
                foreach (int architecture in Architectures)
                    foreach (var (build, options) in Builds)
                        try
                        {
                            var image = compiler.Compile(group.Key, group.First().Type.Replace(':', '.') + ".cu", architecture, CudaImageKind.Ptx, options);
                            string ptx = Encoding.UTF8.GetString(image.Image);
                            foreach (var kernel in EntryPoints)
                                if (!ptx.Contains(".entry " + kernel, StringComparison.Ordinal))
                                    failures.Add($"{names} ({build}), compute_{architecture}: no entry {kernel} in the PTX");
                        }
                        catch (NvrtcCompilationException error)
                        {
                            failures.Add($"{names} ({build}), compute_{architecture}: {error.Message}");
                        }
            }
            return failures;
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }
}
