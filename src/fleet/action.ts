// What to do with a host's new system, as switch-to-configuration names it. Flow code asks
// these functions questions instead of comparing strings (colmena's `Goal` does the same).
import { InputError } from "../errors.js";

export const ACTIONS = ["switch", "boot", "test", "dry-activate"] as const;
export type Action = (typeof ACTIONS)[number];

export function isAction(text: string): text is Action {
  return (ACTIONS as readonly string[]).includes(text);
}

export function parseAction(text: string): Action {
  if (isAction(text)) return text;
  throw new InputError("bad-action", `unknown action "${text}"`, {
    hint: `the actions are ${ACTIONS.join(", ")}`,
  });
}

/** switch, boot: the system profile gets a new generation (and the boot menu with it). */
export function actionSetsProfile(action: Action): boolean {
  return action === "switch" || action === "boot";
}

/** switch, test: the new system starts running now. */
export function actionActivatesNow(action: Action): boolean {
  return action === "switch" || action === "test";
}

/** dry-activate: nothing changes on the host; it only reports what would. */
export function actionIsDryRun(action: Action): boolean {
  return action === "dry-activate";
}

/** The host ends up different (a running system, a profile generation, or both). */
export function actionChangesHost(action: Action): boolean {
  return actionSetsProfile(action) || actionActivatesNow(action);
}

/**
 * A host already running the desired system needs nothing for switch or test. For boot the
 * running system says nothing about the profile and boot entry, so boot always runs.
 */
export function actionSkipsWhenRunning(action: Action): boolean {
  return actionActivatesNow(action);
}

/**
 * Health checks, and the confirmation that guards against a lost host (magic rollback), only
 * mean something when the new system runs now.
 */
export function actionNeedsHealthCheck(action: Action): boolean {
  return actionActivatesNow(action);
}

/** Whether the system survives a reboot: only what the profile holds does. */
export function actionPersistsAfterReboot(action: Action): boolean {
  return actionSetsProfile(action);
}
