// One finding of `nixship doctor`: what was checked, how it stands, and the exact fix.
export type CheckStatus = "ok" | "warn" | "fail" | "skip";

export interface Check {
  /** What part of the setup: nix, fleet, keys, ssh, cache, host NAME, ssm, agent. */
  readonly area: string;
  readonly name: string;
  readonly status: CheckStatus;
  /** What was found (a version, a path, an error's own words). */
  readonly detail: string;
  /** The exact thing to do, for a warn or a fail. */
  readonly fix?: string;
}

export const ok = (area: string, name: string, detail: string): Check => ({
  area,
  name,
  status: "ok",
  detail,
});

export const fail = (area: string, name: string, detail: string, fix: string): Check => ({
  area,
  name,
  status: "fail",
  detail,
  fix,
});

export const warn = (area: string, name: string, detail: string, fix: string): Check => ({
  area,
  name,
  status: "warn",
  detail,
  fix,
});

export const skip = (area: string, name: string, detail: string): Check => ({
  area,
  name,
  status: "skip",
  detail,
});

/** Whether anything found blocks a deploy (a warning does not). */
export function blocksDeploy(checks: readonly Check[]): boolean {
  return checks.some((c) => c.status === "fail");
}
