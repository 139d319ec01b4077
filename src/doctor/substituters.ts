// The deployer's substituters (nix.conf's `substituters`): each asked once for its
// nix-cache-info, all at once and within one short bound. Nix asks every substituter before it
// builds, and waits out its retries on one it cannot reach, so such a one costs every build
// seconds: doctor warns, with the line that fixes it.
import { access } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { shownUrl } from "../util/url-credentials.js";
import { type Check, ok, warn } from "./check.js";

/** Milliseconds every probe together may take (they run at once, one request each). */
export const SUBSTITUTER_PROBE_MS = 3000;

const AREA = "nix";
const CONF = "/etc/nix/nix.conf (or $NIX_CONFIG)";

export type SubstituterReach =
  | { readonly url: string; readonly result: "ok" }
  | { readonly url: string; readonly result: "unreachable"; readonly error: string }
  | { readonly url: string; readonly result: "not-a-cache"; readonly error: string }
  /** A kind of store this check does not ask (s3://, ssh://, the daemon, …). */
  | { readonly url: string; readonly result: "not-probed" }
  /** It asks for credentials (HTTP 401, 403), which Nix may give from its netrc-file. */
  | { readonly url: string; readonly result: "guarded"; readonly status: number };

/** The substituters Nix's shown configuration names; undefined when it names none at all. */
export function configuredSubstituters(
  config: ReadonlyMap<string, string>,
): readonly string[] | undefined {
  const value = config.get("substituters");
  return value === undefined ? undefined : value.split(/\s+/).filter(Boolean);
}

/** Asks each substituter once, all at once, within `timeoutMs` in all. */
export async function probeSubstituters(
  urls: readonly string[],
  timeoutMs = SUBSTITUTER_PROBE_MS,
): Promise<SubstituterReach[]> {
  const signal = AbortSignal.timeout(timeoutMs);
  return await Promise.all(urls.map((url) => probeOne(url, signal, timeoutMs)));
}

async function probeOne(
  written: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<SubstituterReach> {
  // Said without a user, password or credential query it holds (Nix's curl sends them): never
  // in a check's text or its --json.
  const url = shownUrl(written);
  if (/^https?:\/\//.test(written)) {
    try {
      const { target, headers } = cacheInfoRequest(written);
      // No redirect is followed: one request per substituter, whatever it answers.
      const response = await fetch(target, { signal, redirect: "manual", headers });
      await response.body?.cancel();
      // Nix's curl follows a redirect; one request is all this check makes.
      if (response.status === 200 || (response.status >= 301 && response.status <= 308)) {
        return { url, result: "ok" };
      }
      return response.status === 401 || response.status === 403
        ? { url, result: "guarded", status: response.status }
        : {
            url,
            result: "not-a-cache",
            error: `it answers HTTP ${response.status} for nix-cache-info`,
          };
    } catch (err) {
      return { url, result: "unreachable", error: fetchFailure(err, timeoutMs) };
    }
  }
  if (written.startsWith("file://")) {
    let dir: string;
    try {
      dir = fileURLToPath(written.split("?")[0] as string);
    } catch (err) {
      // file://HOST/…: no path of this machine.
      return { url, result: "not-a-cache", error: (err as Error).message };
    }
    return await access(`${dir}/nix-cache-info`).then(
      (): SubstituterReach => ({ url, result: "ok" }),
      (err: NodeJS.ErrnoException): SubstituterReach => ({
        url,
        result: "not-a-cache",
        error: `${dir}/nix-cache-info cannot be read (${err.code ?? err.message})`,
      }),
    );
  }
  return { url, result: "not-probed" };
}

/**
 * The substituter's nix-cache-info, as Nix asks for it: its store settings (`?priority=…`) are
 * Nix's own, not sent; a user and password go as the Basic authorization curl sends for them
 * (fetch refuses a URL that holds them).
 */
function cacheInfoRequest(written: string): { target: string; headers: Record<string, string> } {
  const target = new URL(written);
  target.pathname = `${target.pathname.replace(/\/+$/, "")}/nix-cache-info`;
  target.search = "";
  target.hash = "";
  if (target.username === "" && target.password === "") {
    return { target: target.toString(), headers: {} };
  }
  const user = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
  target.username = "";
  target.password = "";
  return {
    target: target.toString(),
    headers: { authorization: `Basic ${Buffer.from(user).toString("base64")}` },
  };
}

/** Why a request got no answer, in the system's words (ECONNREFUSED, ENOTFOUND, …). */
function fetchFailure(err: unknown, timeoutMs: number): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError" || e.name === "AbortError") {
    return `no answer within ${timeoutMs / 1000} s`;
  }
  const cause = e.cause;
  return cause?.code ?? cause?.message ?? e.message;
}

/** What the probes mean: a warning with its fix for each substituter that fails them. */
export function judgeSubstituters(reach: readonly SubstituterReach[]): Check[] {
  if (reach.length === 0) {
    return [ok(AREA, "substituters", "none: builds use only the local store")];
  }
  const problems = reach.flatMap((r): Check[] => {
    if (r.result === "unreachable") {
      return [
        warn(
          AREA,
          "substituter",
          `${r.url} cannot be reached (${r.error}): every build asks it first, and waits for Nix's retries`,
          `remove it from substituters in ${CONF}; without internet access, turn them all off: substituters =`,
        ),
      ];
    }
    if (r.result === "not-a-cache") {
      return [
        warn(
          AREA,
          "substituter",
          `${r.url} is no binary cache: ${r.error}`,
          `fix or remove it in substituters in ${CONF}`,
        ),
      ];
    }
    return [];
  });
  if (problems.length > 0) return problems;
  const probed = reach.filter((r) => r.result === "ok").map((r) => r.url);
  const other = reach.filter((r) => r.result === "not-probed").map((r) => r.url);
  const guarded = reach.flatMap((r) =>
    r.result === "guarded" ? [`${r.url} (HTTP ${r.status})`] : [],
  );
  return [
    ok(
      AREA,
      "substituters",
      [
        ...(probed.length > 0
          ? [`${probed.join(", ")} answer${probed.length === 1 ? "s" : ""}`]
          : []),
        ...(other.length > 0 ? [`not asked: ${other.join(", ")}`] : []),
        ...(guarded.length > 0
          ? [
              `ask for credentials, not judged (Nix may give them from its netrc-file): ${guarded.join(", ")}`,
            ]
          : []),
      ].join("; "),
    ),
  ];
}
