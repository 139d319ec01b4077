// The local Nix, as the deployer builds with it: present, the experimental features nixship
// needs, and a trivial derivation that builds. Each failure names the nix.conf line that fixes
// it (Debian's nix-bin 2.8 with no nix.conf needs three).

import {
  buildUsersFix,
  FEATURES_FIX,
  NIX_CONF,
  SANDBOX_FAILURE,
  SANDBOX_FIX,
} from "../cache/nix-settings.js";
import {
  atLeast,
  NEWEST_TESTED_NIX,
  newerThanTested,
  parseNixVersion,
  unsupportedNix,
} from "../cache/nix-version.js";
import { runCommand } from "../util/run.js";
import { type Check, fail, ok, warn } from "./check.js";

/** Seconds a probe build may take, and any other Nix query. */
const BUILD_TIMEOUT = 120;
const QUERY_TIMEOUT = 30;

const AREA = "nix";
/**
 * A derivation any Nix can build without nixpkgs, as nixship's example systems are; `nonce`
 * makes it new each run, so that the build really runs (it leaves a few bytes in the store).
 */
function probeExpr(nonce: string): string {
  return `derivation { name = "nixship-doctor-probe"; nonce = "${nonce}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ok > $out" ]; }`;
}

export interface NixFacts {
  /** `nix --version`, or why it could not run. */
  readonly version: { ok: true; text: string } | { ok: false; error: string };
  /** Whether `nix config show` (`show-config`) ran without asking for nix-command on the command line. */
  readonly nixCommand: boolean;
  /** nix show-config's settings (read with nix-command enabled for the one call). */
  readonly config: ReadonlyMap<string, string>;
  /** The probe build: ok, or Nix's own words. */
  readonly build: { ok: true } | { ok: false; error: string };
}

export async function probeNix(env: NodeJS.ProcessEnv): Promise<NixFacts> {
  const query = () => AbortSignal.timeout(QUERY_TIMEOUT * 1000);
  const version = await runCommand("nix", ["--version"], { env, signal: query() }).then(
    (r) => ({ ok: true as const, text: r.stdout.trim() }),
    (err: Error) => ({ ok: false as const, error: err.message }),
  );
  if (!version.ok) {
    return { version, nixCommand: false, config: new Map(), build: { ok: false, error: "" } };
  }
  // `nix config show` since Nix 2.20; `show-config` before (later Nix warns it is deprecated).
  const parsed = parseNixVersion(version.text);
  const show =
    parsed !== undefined && atLeast(parsed, "2.20") ? ["config", "show"] : ["show-config"];
  const plain = await runCommand("nix", show, {
    env,
    okCodes: [0, 1],
    signal: query(),
  });
  const shown =
    plain.code === 0
      ? plain
      : await runCommand("nix", ["--extra-experimental-features", "nix-command", ...show], {
          env,
          okCodes: [0, 1],
          signal: query(),
        });
  const config = new Map<string, string>();
  for (const line of shown.stdout.split("\n")) {
    const eq = line.indexOf(" = ");
    if (eq > 0) config.set(line.slice(0, eq), line.slice(eq + 3).trim());
  }
  const build = await runCommand(
    "nix",
    [
      "--extra-experimental-features",
      "nix-command",
      "build",
      "--impure",
      "--no-link",
      "--expr",
      probeExpr(`${Date.now()}-${process.pid}`),
    ],
    { env, okCodes: [0, 1, 100, 101], signal: AbortSignal.timeout(BUILD_TIMEOUT * 1000) },
  ).then(
    (r) => (r.code === 0 ? { ok: true as const } : { ok: false as const, error: r.stderr }),
    (err: Error) => ({ ok: false as const, error: err.message }),
  );
  return { version, nixCommand: plain.code === 0, config, build };
}

/** What the facts mean, each with its fix. */
export function judgeNix(facts: NixFacts): Check[] {
  if (!facts.version.ok) {
    return [
      fail(AREA, "nix", facts.version.error, "install Nix: apt-get install nix-bin (Debian)"),
    ];
  }
  const checks: Check[] = [judgeNixVersion(AREA, facts.version.text, "the local machine")];
  const features = (facts.config.get("experimental-features") ?? "").split(/\s+/);
  const missing = [
    ...(facts.nixCommand ? [] : ["nix-command"]),
    ...(features.includes("flakes") ? [] : ["flakes"]),
  ];
  checks.push(
    missing.length === 0
      ? ok(AREA, "experimental features", "nix-command flakes")
      : fail(AREA, "experimental features", `${missing.join(" and ")} not enabled`, FEATURES_FIX),
  );
  const group = facts.config.get("build-users-group") ?? "";
  const sandbox = facts.config.get("sandbox") ?? "";
  if (facts.build.ok) {
    checks.push(ok(AREA, "build", "a trivial derivation builds"));
    return checks;
  }
  const error = facts.build.error;
  const last = lastNixLine(error);
  if (/build-users-group/.test(error) && group !== "") {
    checks.push(fail(AREA, "build", `builds fail: ${last}`, buildUsersFix(group)));
  } else if (SANDBOX_FAILURE.test(error) && sandbox === "true") {
    checks.push(fail(AREA, "build", `builds fail in the sandbox: ${last}`, SANDBOX_FIX));
  } else {
    checks.push(
      fail(
        AREA,
        "build",
        `a trivial derivation does not build: ${last}`,
        "run the build by hand to see Nix's whole log: nix build --impure --expr 'derivation { … }'",
      ),
    );
  }
  if (sandbox === "true" && !/executing/.test(error)) {
    checks.push(
      warn(
        AREA,
        "sandbox",
        "sandbox = true",
        `if builds fail with "executing '/bin/sh'", add to ${NIX_CONF}: sandbox = false`,
      ),
    );
  }
  return checks;
}

/**
 * A Nix's version line judged against the versions nixship is tested with: refused below the
 * oldest; above the newest it passes, saying it was not tested.
 */
export function judgeNixVersion(area: string, said: string, where: string): Check {
  const version = parseNixVersion(said);
  const refused = unsupportedNix(version, said, where);
  if (refused !== undefined || version === undefined) {
    return fail(area, "nix", refused?.message ?? said, refused?.hint ?? "");
  }
  return ok(
    area,
    "nix",
    newerThanTested(version)
      ? `${version.text} (newer than ${NEWEST_TESTED_NIX}, the newest tested)`
      : version.text,
  );
}

/** Nix's last meaningful error line. */
function lastNixLine(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) =>
      l
        .replace(/^\s*>\s*/, "")
        .replace(/\s+/g, " ")
        .trim(),
    )
    .filter((l) => l !== "" && !l.startsWith("For full logs") && !l.startsWith("warning:"));
  const error = lines.find((l) => l.startsWith("error:"));
  const cause = lines.find((l) => /No such file|does not exist|denied/.test(l));
  return (cause ?? error ?? lines.at(-1) ?? "no output").slice(0, 300);
}
