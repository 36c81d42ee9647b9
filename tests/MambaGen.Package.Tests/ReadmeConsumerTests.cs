using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;

namespace MambaGen.Package.Tests;

/// <summary>
/// What a new user does: pack MambaGen, add it to a fresh console project from a local folder, paste README's
/// program and run it. README's first C# block is that program, read from README.md here, so the README cannot
/// drift from what works.
/// </summary>
public sealed partial class ReadmeConsumerTests : IDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(4);

    private readonly string _root = Path.Combine(Path.GetTempPath(), "mambagen-readme-" + Guid.NewGuid().ToString("N")[..12]);

    private static string Metadata(string key) =>
        typeof(ReadmeConsumerTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value
        ?? throw new InvalidOperationException($"Assembly metadata '{key}' is empty.");

    private static string RepositoryRoot => Metadata("RepositoryRoot");

    [Fact]
    public void ReadmeProgramBuildsAndRunsAgainstThePackedPackage()
    {
        string feed = Path.Combine(_root, "feed");
        string consumer = Path.Combine(_root, "consumer");
        Directory.CreateDirectory(consumer);
        // A version no earlier run used, so no cached copy of an older package can stand in for this one.
        string version = "0.0.0-readme." + DateTime.UtcNow.ToString("yyyyMMddHHmmss") + "." + Guid.NewGuid().ToString("N")[..8];

        Run(RepositoryRoot, "pack", Path.Combine("src", "MambaGen"), "-c", Metadata("Configuration"), "--no-build",
            "-o", feed, $"-p:PackageVersion={version}");
        string package = Path.Combine(feed, $"MambaGen.{version}.nupkg");
        Assert.True(File.Exists(package), $"dotnet pack did not write {package}.");

        File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
                <EmitCompilerGeneratedFiles>true</EmitCompilerGeneratedFiles>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="MambaGen" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        // The local folder beside the user's configured feeds; packages go to a folder of this test's own, falling
        // back to the user's cache for dependencies already downloaded.
        File.WriteAllText(Path.Combine(consumer, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config><add key="globalPackagesFolder" value="{Path.Combine(_root, "packages")}" /></config>
              <packageSources><add key="mambagen-local" value="{feed}" /></packageSources>
              <fallbackPackageFolders><add key="user-cache" value="{UserPackageCache()}" /></fallbackPackageFolders>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(consumer, "Program.cs"), ReadmeProgram());

        string build = Run(consumer, "build", "-c", "Debug");
        Assert.DoesNotMatch(WarningOrError(), build);

        string output = Run(consumer, Path.Combine(consumer, "bin", "Debug", "net10.0", "Consumer.dll"));
        // Shapes fixed by the README's declaration: 1 sequence × 5 tokens × Vocab 16 logits, 8 greedy tokens (the
        // declaration names no end-of-sequence token, so generation cannot stop early), and a lossless round trip.
        Assert.Contains("logits: 80 = 1 x 5 x 16", output);
        Assert.Matches(new Regex(@"^generated 8 tokens: (\d+ ){7}\d+$", RegexOptions.Multiline), output);
        Assert.Contains("reloaded logits identical: True", output);
        Assert.True(File.Exists(Path.Combine(consumer, "tiny-checkpoint", "config.json")), "The README's Save wrote no config.json.");
        Assert.True(File.Exists(Path.Combine(consumer, "tiny-checkpoint", "model.safetensors")), "The README's Save wrote no model.safetensors.");

        // README says where EmitCompilerGeneratedFiles puts the generated source; it must be there.
        string generated = Path.Combine(consumer, "obj", "Debug", "net10.0", "generated", "MambaGen.Generators",
            "MambaGen.Generators.MambaModelGenerator", "TinyMamba.g.cs");
        Assert.True(File.Exists(generated), $"README's path to the generated source does not exist: {generated}");
        Assert.Contains(@"obj/<Configuration>/<TargetFramework>/generated/MambaGen.Generators/MambaGen.Generators.MambaModelGenerator/",
            File.ReadAllText(Path.Combine(RepositoryRoot, "README.md")));
    }

    [Fact]
    public void ReadmeStartsWithAddingThePackage()
    {
        string readme = File.ReadAllText(Path.Combine(RepositoryRoot, "README.md"));
        int add = readme.IndexOf("dotnet add package MambaGen", StringComparison.Ordinal);
        int firstCode = readme.IndexOf("```csharp", StringComparison.Ordinal);
        Assert.True(add >= 0 && add < firstCode, "README must say `dotnet add package MambaGen` before its first C# block.");
    }

    /// <summary>The first C# block after README's <c>dotnet add package MambaGen</c>.</summary>
    private static string ReadmeProgram()
    {
        string readme = File.ReadAllText(Path.Combine(RepositoryRoot, "README.md")).ReplaceLineEndings("\n");
        int start = readme.IndexOf("dotnet add package MambaGen", StringComparison.Ordinal);
        Assert.True(start >= 0, "README.md does not say `dotnet add package MambaGen`.");
        var block = CSharpBlock().Match(readme, start);
        Assert.True(block.Success, "README.md has no ```csharp block after `dotnet add package MambaGen`.");
        return block.Groups["code"].Value;
    }

    [GeneratedRegex(@"```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    // MSBuild's own summary lines ("0 Warning(s)") do not match; a compiler or NuGet warning does.
    [GeneratedRegex(@": (warning|error) [A-Z]+[0-9]+")]
    private static partial Regex WarningOrError();

    private static string UserPackageCache() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>Runs <c>dotnet</c> with <paramref name="arguments"/>; fails the test with its output unless it exits 0.</summary>
    private static string Run(string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        if (arguments[0] is "build" or "pack")
        {
            // A build server left running would keep this test's output pipes open after the command ends.
            start.ArgumentList.Add("--disable-build-servers");
        }
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";

        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start dotnet.");
        var output = new StringBuilder();
        var outputDone = process.StandardOutput.ReadToEndAsync();
        var errorDone = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(CommandTimeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"`dotnet {string.Join(' ', arguments)}` did not finish within {CommandTimeout.TotalMinutes} minutes.");
        }
        output.Append(outputDone.Result).Append(errorDone.Result);
        Assert.True(process.ExitCode == 0,
            $"`dotnet {string.Join(' ', arguments)}` in {workingDirectory} exited with {process.ExitCode}:\n{output}");
        return output.ToString();
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary folder is harmless; the test's own result is what matters.
        }
    }
}
