#!/usr/bin/env bash
# Packs the test suite for a machine with a GPU but no .NET: the Release build of tests/MambaGen.Tests, the
# local .NET runtime and the xunit 2.4.1 console runner, in one .tar.xz, plus run-gpu-tests.sh that unpacks and
# runs it. Usage: tests/gpu/pack.sh OUTPUT_DIR   (then copy OUTPUT_DIR over and run OUTPUT_DIR/run-gpu-tests.sh)
set -euo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 OUTPUT_DIR" >&2; exit 2; fi
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# 1. The tests, framework-dependent (the runtime travels separately, once).
dotnet build "$repo/tests/MambaGen.Tests/MambaGen.Tests.csproj" -c Release -v q -nologo
mkdir -p "$work/bundle"
cp -r "$repo/tests/MambaGen.Tests/bin/Release/net10.0" "$work/bundle/tests"
# Satellite resource folders and symbols are not needed to run; they only add size.
find "$work/bundle/tests" -mindepth 1 -maxdepth 1 -type d -not -name fixtures -not -name templates -not -name runtimes -exec rm -rf {} +

# 2. The runtime: the host, hostfxr and the newest Microsoft.NETCore.App of the local SDK.
dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
runtime=$(ls -d "$dotnet_root"/shared/Microsoft.NETCore.App/*/ | sort -V | tail -1)
mkdir -p "$work/bundle/dotnet/shared/Microsoft.NETCore.App"
cp "$dotnet_root/dotnet" "$work/bundle/dotnet/"
cp -r "$dotnet_root/host" "$work/bundle/dotnet/"
cp -r "${runtime%/}" "$work/bundle/dotnet/shared/Microsoft.NETCore.App/"

# 3. xunit.runner.console 2.4.1 (its netcoreapp2.0 runner rolls forward onto the bundled runtime), restored
#    through a throwaway project so it comes from the configured NuGet feed into the usual package folder.
mkdir -p "$work/restore"
cat > "$work/restore/restore.csproj" <<'PROJECT'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net10.0</TargetFramework></PropertyGroup>
  <ItemGroup><PackageReference Include="xunit.runner.console" Version="2.4.1" /></ItemGroup>
</Project>
PROJECT
dotnet restore "$work/restore/restore.csproj" -v q
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cp -r "$packages/xunit.runner.console/2.4.1/tools/netcoreapp2.0" "$work/bundle/runner"

tar -C "$work/bundle" -cf - . | xz -6 -T0 > "$out/mambagen-tests.tar.xz"

cat > "$out/run-gpu-tests.sh" <<'RUNNER'
#!/usr/bin/env bash
# Unpacks mambagen-tests.tar.xz (beside this script) and runs the tests with the bundled .NET runtime.
# Arguments go to xunit.console, e.g. -namespace MambaGen.Tests.Cuda, -class X, -trait "k=v", -xml results.xml.
# Exit code: xunit.console's (0 when every test that ran passed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
tar -C "$dir" -xJf "$here/mambagen-tests.tar.xz"
cd "$dir/tests"
export DOTNET_ROOT="$dir/dotnet" DOTNET_ROLL_FORWARD=Major DOTNET_CLI_TELEMETRY_OPTOUT=1
set +e
"$dir/dotnet/dotnet" "$dir/runner/xunit.console.dll" MambaGen.Tests.dll "$@"
status=$?
rm -rf "$dir"
exit $status
RUNNER
chmod +x "$out/run-gpu-tests.sh"
echo "Packed $(du -h "$out/mambagen-tests.tar.xz" | cut -f1) into $out (run: $out/run-gpu-tests.sh [xunit.console options])"
