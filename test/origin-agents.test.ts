// Who put each agent host's system there, and from what, on a lab of two hosts with
// real agents (`lab up --agents`, lab "wa"): an agent that applies a release names it in its
// record, and `status` reads who published that release and from what in the origin document
// signed beside it. A later release that names the same system for a host did not put it there;
// an origin document changed in the store is said to be not believed, by status and by
// `release show`, never shown as true.
import { readFile, writeFile } from "node:fs/promises";
import { hostname, userInfo } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import {
  type AgentLab,
  CHANNEL,
  channelRelease,
  deployViaAgent,
  setSystems,
  startAgentLab,
} from "./support/agent-lab.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";

const BY = `${userInfo().username}@${hostname()}`;
let lab: AgentLab;

beforeAll(async () => {
  lab = await startAgentLab("wa", {
    hosts: 2,
    agentConfig: { pollInterval: 1, heartbeatEvery: 10 },
  });
});
afterAll(async () => {
  await lab?.down();
});

interface Origin {
  readonly kind: string;
  readonly ref: string | null;
  readonly by: string | null;
  readonly sources: readonly { flake: string; rev: string | null; dirty: boolean | null }[];
  readonly problem: string | null;
}

async function origins(): Promise<Record<string, Origin | undefined>> {
  const r = await nixship(["status", "--fleet", lab.fleetFile, "--json"]);
  const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; origin?: Origin }[] }).hosts;
  return Object.fromEntries(hosts.map((h) => [h.host, h.origin]));
}

describe("who put each agent host's system there, and from what", () => {
  let before: Record<string, Origin | undefined>;

  it("status names the release each agent applied, who published it and from which flake", async () => {
    await setSystems(lab, "web-v1");
    const deployed = await deployViaAgent(lab);
    expect(deployed.code, deployed.stderr).toBe(0);
    before = await origins();
    for (const host of ["wa1", "wa2"]) {
      expect(before[host]).toEqual({
        kind: "release",
        ref: expect.stringMatching(new RegExp(`^${CHANNEL}/[0-9]+$`)),
        by: BY,
        sources: [
          {
            flake: EXAMPLES_DIR,
            rev: expect.stringMatching(/^[0-9a-f]{40}$/),
            dirty: expect.any(Boolean),
          },
        ],
        problem: null,
      });
    }
    const text = await nixship(["status", "--fleet", lab.fleetFile]);
    expect(text.stdout).toMatch(
      new RegExp(
        `wa1 .*released \\(release ${before.wa1?.ref}\\) by ${BY} from ${EXAMPLES_DIR} at [0-9a-f]{12}`,
      ),
    );
  });

  it("a host a later release leaves on its system keeps the word of the release that put it there", async () => {
    await setSystems(lab, "web-v2", ["wa1"]);
    const deployed = await deployViaAgent(lab);
    expect(deployed.code, deployed.stderr).toBe(0);
    // The channel's release now: the one that moved wa1, and names wa2's system too.
    const now = `${CHANNEL}/${(await channelRelease(lab)).release.seq}`;
    expect(now).not.toBe(before.wa1?.ref);
    const shown = await origins();
    expect(shown.wa1).toMatchObject({ kind: "release", ref: now, by: BY, problem: null });
    // wa2 ran its system already: the release that put it there keeps the word.
    expect(shown.wa2).toEqual(before.wa2);
  });

  it("an origin document changed in the store is not believed: status and release show say so", async () => {
    const ref = (await origins()).wa1?.ref as string;
    const seq = ref.split("/")[1] as string;
    const file = join(lab.dir, "cache", "releases", CHANNEL, `${seq}.origin.json`);
    const doc = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...doc, by: "mallory@nowhere" }));
    const shown = await origins();
    expect(shown.wa1).toMatchObject({ kind: "release", ref, by: null });
    expect(shown.wa1?.problem).toMatch(/not to be believed.*does not match/);
    expect(shown.wa2).toEqual(before.wa2);
    const text = await nixship(["status", "--fleet", lab.fleetFile]);
    expect(text.stdout).not.toContain("mallory");
    const show = await nixship([
      "release",
      "show",
      seq,
      "--channel",
      CHANNEL,
      "--fleet",
      lab.fleetFile,
    ]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(
      "  published  by whom NOT KNOWN: its origin document is not to be believed",
    );
    expect(show.stdout).not.toContain("mallory");
    expect(show.stderr).toContain(`warning: who published release ${seq} is not known`);
  });
});
