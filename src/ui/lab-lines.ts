// What `nixship lab up` prints: a line per host as it comes up, then the hosts (stdout) and how
// to reach and deploy to them (stderr).
import { dirname } from "node:path";
import type { LabAgentAction, LabAgentsResult, LabEvent } from "../lab/lab.js";
import { pinnedCacheAddress } from "../lab/lab-pinned.js";
import type { LabState } from "../lab/lab-state.js";
import type { LabLayout } from "../lab/layout.js";

/** The progress line of an event, or undefined for one that has none. */
export function formatLabEvent(e: LabEvent): string | undefined {
  if (e.type === "host-up") return `${e.host} is up`;
  if (e.type === "agent-up") return `${e.host}: its agent runs (pid ${e.pid})`;
  return undefined;
}

/** The hosts, one `NAME<TAB>ADDRESS` line each (stdout). */
export function formatLabHosts(state: LabState): string {
  return state.hosts.map((h) => `${h.name}\t${h.address}\n`).join("");
}

/**
 * How to reach the lab and deploy to it (stderr). `mergedInto`: the user's fleet file that
 * holds the hosts (`lab up --fleet`), which the deploy names; its cache's key is the lab's
 * only when the file was created from the lab's own.
 */
export function formatLabHints(
  state: LabState,
  layout: LabLayout,
  alreadyUp: boolean,
  mergedInto?: { readonly file: string; readonly created: boolean },
): string {
  const { files } = layout;
  const fleet = mergedInto?.file ?? files.fleet;
  const key = mergedInto === undefined || mergedInto.created ? files.cacheKey : "SECRET_FILE";
  const served = state.pinned === true ? pinnedCacheAddress(layout) : `${layout.gateway}:0`;
  const deploy =
    state.agents === true
      ? `deploy: nixship deploy --fleet ${fleet} --key ${key} --release-key ${files.releaseKey}`
      : `deploy: nixship deploy --fleet ${fleet} --key ${key} --serve-cache ${served}`;
  return [
    ...(alreadyUp ? [`lab '${layout.name}' is already up`] : []),
    ...(state.nix ? [`the hosts run ${state.nix}`] : []),
    ...(state.pinned === true
      ? [
          `the hosts are pinned: they trust only ${files.cacheKey}'s key and http://${pinnedCacheAddress(layout)}, and are deployed to as deploy through sudo`,
        ]
      : []),
    `ssh: ssh -F ${files.sshConfig} ${state.hosts[0]?.name}`,
    deploy,
    ...(mergedInto === undefined
      ? [
          `the same fleet in Nix: ${files.fleetFlake} (--fleet path:${dirname(files.fleetFlake)}#nixship)`,
        ]
      : []),
    ...(key === "SECRET_FILE" ? [`  (SECRET_FILE: the secret key of ${fleet}'s cache)`] : []),
  ]
    .map((l) => `${l}\n`)
    .join("");
}

/**
 * What `lab agents ACTION` did, a line per host it acted on: paused or resumed (as the pause
 * flag now says), else its agent's pid or "stopped".
 */
export function formatLabAgents(action: LabAgentAction, done: LabAgentsResult): string {
  const acted = new Set(done.hosts);
  return done.state.hosts
    .filter((h) => acted.has(h.name))
    .map((h) => {
      if (action === "pause" || action === "resume") {
        return done.paused.has(h.name)
          ? `${h.name}: paused (from its next poll its agent applies no release, and its heartbeat says so)\n`
          : `${h.name}: resumed\n`;
      }
      return `${h.name}\t${h.agentPid ?? "stopped"}\n`;
    })
    .join("");
}
