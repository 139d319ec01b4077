// An ssm host the deploy reboots, after SSM's agent rebooted its instances and ran the document
// again (the boot activation exits 194): each instance's after-boot verdict came back as its
// invocation's result. What is left is the deployer's: the HTTP checks, then confirm-boot to
// keep the new system, or abort-boot to go back (and, with the reboot's rollback, reboot into
// the previous system), both sent as SSM commands to the host's instances.

import type {
  DeployOutcome,
  DeployRequest,
  RebootRequest,
  ScriptRun,
  SessionHooks,
} from "../host/activation-session.js";
import { failed, runHttpChecks } from "../host/session-steps.js";
import type { PruneReport } from "../status/prune-report.js";

export type BootVerb = "confirm-boot" | "abort-boot";

export async function finishSsmReboot(
  combined: DeployOutcome,
  request: DeployRequest,
  reboot: RebootRequest,
  send: (verb: BootVerb) => Promise<readonly ScriptRun[]>,
  prune: (() => Promise<PruneReport>) | undefined,
  hooks: SessionHooks,
): Promise<DeployOutcome> {
  if (combined.status !== "activated") return combined;
  hooks.phase("health");
  const verdict = await runHttpChecks(request, hooks);
  if (verdict !== undefined) {
    hooks.phase("rollback");
    const problems = failures(await send("abort-boot"));
    if (problems.length > 0) {
      return failed("health", `${verdict}; going back failed: ${problems.join("; ")}`, false);
    }
    const next = reboot.rollback
      ? "; it reboots into its previous system"
      : "; its previous generation boots next";
    return failed("health", `${verdict}; back on the previous generation${next}`, true);
  }
  hooks.phase("confirm");
  const problems = failures(await send("confirm-boot"));
  if (problems.length > 0) {
    return failed("confirm", `confirming the reboot failed: ${problems.join("; ")}`, false);
  }
  const pruned = prune === undefined ? undefined : await prune();
  hooks.phase("done");
  return { ...combined, ...(pruned === undefined ? {} : { pruned }) };
}

/** Why each run that did not succeed failed. */
function failures(runs: readonly ScriptRun[]): string[] {
  return runs
    .filter((r) => r.code !== 0)
    .map((r) => (r.result && "message" in r.result && r.result.message) || r.failure);
}
