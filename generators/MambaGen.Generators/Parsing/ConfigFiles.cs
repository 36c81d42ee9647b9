using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Parsing
{
    /// <summary>
    /// The compilation's AdditionalFiles as <see cref="SpecBuilder"/> needs them: every path, for matching a
    /// <c>ConfigFile</c>, and the contents of those that are matched. The generator prepares it ahead of time (as an
    /// equatable record); the analyzer reads files on demand.
    /// </summary>
    internal interface IConfigFileSource
    {
        IReadOnlyList<string> AdditionalFilePaths { get; }

        /// <summary>The project directory (MSBuild's <c>ProjectDir</c>), when the build passes it on.</summary>
        string? ProjectDirectory { get; }

        /// <summary>Reads the AdditionalText at <paramref name="path"/>, one of <see cref="AdditionalFilePaths"/>.</summary>
        ConfigDocument Read(string path, CancellationToken cancellationToken);
    }

    /// <summary>The generator's snapshot of the config files: paths plus every matched file already read.</summary>
    internal sealed record ConfigFileSet(
        EquatableArray<string> Paths,
        string? ProjectDirectory,
        EquatableArray<ConfigDocument> Documents) : IConfigFileSource
    {
        public IReadOnlyList<string> AdditionalFilePaths => Paths.AsImmutableArray();

        /// <summary>
        /// The generator reads exactly the files <see cref="ConfigFileResolver"/> picks, so a match is always
        /// present; a file that vanished in between reads as unreadable.
        /// </summary>
        public ConfigDocument Read(string path, CancellationToken cancellationToken) =>
            Documents.FirstOrDefault(d => d.Path == path) ?? ConfigReader.Read(path, null);
    }

    /// <summary>The outcome of matching a <c>ConfigFile</c> string against the AdditionalFiles.</summary>
    /// <param name="Path">The one matching AdditionalText path, or null.</param>
    /// <param name="Candidates">Every path that matched: none, the one in <paramref name="Path"/>, or several (ambiguous).</param>
    internal sealed record ConfigFileMatch(string? Path, EquatableArray<string> Candidates);

    /// <summary>
    /// Finds the AdditionalFile a <c>ConfigFile</c> names. Separators are normalised and <c>.</c>/<c>..</c>
    /// resolved, and names compare case-insensitively (so a declaration means the same file on Windows and Linux).
    /// In order of preference: an absolute <c>ConfigFile</c> must equal the file's path; a relative one is first
    /// resolved against the project directory; failing that, a file whose path ends with it at a directory
    /// boundary matches, and more than one such file is ambiguous.
    /// </summary>
    internal static class ConfigFileResolver
    {
        public static ConfigFileMatch Resolve(string configFile, IReadOnlyList<string> paths, string? projectDirectory)
        {
            var wanted = Normalize(configFile);
            if (wanted.Length == 0) return NoMatch;
            // The same file listed twice (say once relative, once absolute) is one candidate, not an ambiguity.
            var files = paths
                .Select(p => (Original: p, Normalized: Normalize(p)))
                .GroupBy(f => f.Normalized, StringComparer.OrdinalIgnoreCase)
                .Select(g => g.First())
                .ToList();

            if (IsRooted(wanted)) return Pick(files.Where(f => SamePath(f.Normalized, wanted)));

            if (!string.IsNullOrEmpty(projectDirectory))
            {
                var underProject = Normalize(projectDirectory + "/" + configFile);
                var exact = Pick(files.Where(f => SamePath(f.Normalized, underProject)));
                if (exact.Path is not null) return exact;
            }

            return Pick(files.Where(f => SamePath(f.Normalized, wanted)
                || f.Normalized.EndsWith("/" + wanted, StringComparison.OrdinalIgnoreCase)));
        }

        /// <summary>Forward slashes, no empty or <c>.</c> segments, <c>..</c> folded into its parent where there is one (and dropped at the root).</summary>
        public static string Normalize(string path)
        {
            var unified = path.Trim().Replace('\\', '/');
            bool rooted = unified.StartsWith("/", StringComparison.Ordinal);
            var segments = new List<string>();
            foreach (var segment in unified.Split('/'))
            {
                if (segment.Length == 0 || segment == ".") continue;
                if (segment == "..")
                {
                    bool atRoot = (rooted && segments.Count == 0) || (segments.Count == 1 && IsDrive(segments[0]));
                    if (atRoot) continue; // as the file system does: the parent of the root is the root
                    if (segments.Count > 0 && segments[segments.Count - 1] != "..")
                    {
                        segments.RemoveAt(segments.Count - 1);
                        continue;
                    }
                }
                segments.Add(segment);
            }
            return (rooted ? "/" : "") + string.Join("/", segments);
        }

        private static readonly ConfigFileMatch NoMatch = new ConfigFileMatch(null, default);

        private static ConfigFileMatch Pick(IEnumerable<(string Original, string Normalized)> matches)
        {
            var list = matches.ToList();
            return list.Count switch
            {
                0 => NoMatch,
                1 => new ConfigFileMatch(list[0].Original, new EquatableArray<string>(new[] { list[0].Original })),
                _ => new ConfigFileMatch(null, new EquatableArray<string>(list.Select(m => m.Original))),
            };
        }

        private static bool SamePath(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

        private static bool IsRooted(string normalized) =>
            normalized.StartsWith("/", StringComparison.Ordinal) || (normalized.Length >= 2 && IsDrive(normalized.Substring(0, 2)));

        private static bool IsDrive(string segment) =>
            segment.Length == 2 && segment[1] == ':' && char.IsLetter(segment[0]);
    }
}
