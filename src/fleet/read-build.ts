// The `build` section of the fleet file: Nix's remote builders (`builders`, in Nix's own syntax
// or `@FILE`), one build host (`host`), and the deployer's own `maxJobs`.
import {
  BUILDERS_PATTERN,
  type BuildersSpec,
  formatBuilders,
  parseBuilderEntries,
} from "./builders.js";
import { BUILD_HOST_PATTERN, type BuildSettings, NO_BUILD_SETTINGS } from "./fleet.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import { type Problems, readInteger, readObject, readString } from "./json-check.js";

export function readBuild(value: unknown, problems: Problems): BuildSettings | undefined {
  if (value === undefined) return NO_BUILD_SETTINGS;
  const path = ["build"];
  const build = readObject(value, path, problems, FLEET_KEYS.build);
  if (build === undefined) return undefined;
  const builders =
    build.builders === undefined
      ? undefined
      : readBuilders(build.builders, [...path, "builders"], problems);
  const host =
    build.host === undefined
      ? undefined
      : readString(build.host, [...path, "host"], problems, {
          pattern: BUILD_HOST_PATTERN,
          maxLength: 255,
        });
  const maxJobs =
    build.maxJobs === undefined
      ? undefined
      : readInteger(build.maxJobs, [...path, "maxJobs"], problems, { min: 0, max: 1024 });
  if (builders !== undefined && host !== undefined) {
    problems.add(
      [...path, "host"],
      'a build host builds everything itself: give "builders" or "host", not both',
    );
  }
  return { builders, host, maxJobs };
}

/** `@FILE` (a machines file, read when a build starts), or entries in Nix's builders syntax. */
function readBuilders(
  value: unknown,
  path: (string | number)[],
  problems: Problems,
): BuildersSpec | undefined {
  const text = readString(value, path, problems, { maxLength: 65536 });
  if (text === undefined) return undefined;
  if (text.startsWith("@")) {
    const file = text.slice(1).trim();
    if (file === "" || /[;\n#\0]/.test(file)) {
      return problems.add(
        path,
        `"@FILE" must name one machines file (${JSON.stringify(text.slice(0, 80))})`,
      );
    }
    return { kind: "file", path: file };
  }
  const parsed = parseBuilderEntries(text, { comments: false });
  for (const problem of parsed.problems) problems.add(path, problem);
  if (parsed.problems.length > 0) return undefined;
  // The pattern is the schema's; the parser above is stricter, so this only keeps them honest.
  if (!BUILDERS_PATTERN.test(text)) return problems.add(path, "is not in Nix's builders syntax");
  return { kind: "machines", machines: parsed.machines };
}

/** The section as the fleet file writes it; undefined when it holds nothing. */
export function buildToJson(build: BuildSettings): Record<string, unknown> | undefined {
  const doc: Record<string, unknown> = {
    ...(build.builders === undefined
      ? {}
      : {
          builders:
            build.builders.kind === "file"
              ? `@${build.builders.path}`
              : formatBuilders(build.builders.machines),
        }),
    ...(build.host === undefined ? {} : { host: build.host }),
    ...(build.maxJobs === undefined ? {} : { maxJobs: build.maxJobs }),
  };
  return Object.keys(doc).length === 0 ? undefined : doc;
}
