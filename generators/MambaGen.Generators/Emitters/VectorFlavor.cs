namespace MambaGen.Generators.Emitters
{
    /// <summary>
    /// A vector width the kernels are emitted for. The kernel text is the same for every flavor apart from the vector
    /// type; the model dispatches on <c>Vector512.IsHardwareAccelerated</c> (a JIT-time constant).
    /// </summary>
    internal sealed class VectorFlavor
    {
        public static readonly VectorFlavor[] All =
        {
            new VectorFlavor("Simd512", "Vector512", 16),
            new VectorFlavor("Simd256", "Vector256", 8),
        };

        private VectorFlavor(string className, string vectorName, int width)
        {
            ClassName = className;
            Static = "global::System.Runtime.Intrinsics." + vectorName;
            Type = Static + "<float>";
            Width = width;
            Bits = width * 32;
        }

        /// <summary>Nested class holding this width's kernels.</summary>
        public string ClassName { get; }
        /// <summary>The vector type, e.g. <c>Vector512&lt;float&gt;</c>, fully qualified.</summary>
        public string Type { get; }
        /// <summary>The static helper class, e.g. <c>Vector512</c>, fully qualified.</summary>
        public string Static { get; }
        /// <summary>Floats per vector.</summary>
        public int Width { get; }
        public int Bits { get; }
    }
}
