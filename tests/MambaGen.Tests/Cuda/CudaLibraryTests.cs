using MambaGen.Cuda.Interop;

namespace MambaGen.Tests.Cuda;

public class CudaLibraryTests
{
    [Theory]
    [InlineData(CudaLibraryKind.Driver, "driver")]
    [InlineData(CudaLibraryKind.Nvrtc, "NVRTC")]
    [InlineData(CudaLibraryKind.Cublas, "cuBLAS")]
    public void A_missing_library_names_itself_the_places_tried_and_how_to_get_it(CudaLibraryKind kind, string howToGetHint)
    {
        var empty = Path.Combine(Path.GetTempPath(), "mambagen-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(empty);
        try
        {
            var e = Assert.Throws<CudaLibraryNotFoundException>(() => CudaLibrary.Locate(kind, [empty], searchLoaderPath: false, []));
            Assert.Equal(kind, e.Library);
            foreach (var name in CudaLibrary.CandidateNames(kind))
            {
                Assert.Contains(name, e.Message);
                Assert.Contains(Path.Combine(empty, name), e.Tried);
            }
            Assert.Contains(empty, e.Message);
            Assert.Contains(howToGetHint, e.Message);
            Assert.Contains(kind == CudaLibraryKind.Driver ? "NVIDIA GPU driver" : "CUDA toolkit", e.Message);
        }
        finally
        {
            Directory.Delete(empty);
        }
    }
}
