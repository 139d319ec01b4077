// The steps a host goes through in a deploy, in every delivery mode: what progress shows, and
// what a failure names as the step it failed in.
export const HOST_PHASES = [
  "connect",
  // Agent hosts: the release is published, and the deployer waits for the agent's report.
  "waiting",
  "copy",
  "realise",
  // The host's secrets, decrypted and installed before the profile is set.
  "secrets",
  "profile",
  "switch",
  // deploy --reboot: from the reboot until the host answers again on the new system.
  "reboot",
  "health",
  "confirm",
  // Once confirmed: the wave's bake (its checks repeated, its analysis measured).
  "bake",
  "rollback",
  "done",
] as const;
export type HostPhase = (typeof HOST_PHASES)[number];
/** Phases of an activation session: a deploy's, but the copy before it. */
export type SessionPhase = Exclude<HostPhase, "copy">;

export function isHostPhase(text: string): text is HostPhase {
  return (HOST_PHASES as readonly string[]).includes(text);
}
