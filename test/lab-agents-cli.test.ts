// `nixship lab agents pause|resume` on a lab whose hosts run real pull agents: it says what it
// did to each host it names (paused, resumed), as the hosts' pause flags then are, and --json
// gives every host's agent with whether it is paused.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import { type AgentLab, startAgentLab } from "./support/agent-lab.js";

let lab: AgentLab;

beforeAll(async () => {
  lab = await startAgentLab("lp", { hosts: 2 });
}, 180_000);
afterAll(async () => {
  await lab?.down();
});

const agents = (...args: string[]) =>
  nixship(["lab", "agents", ...args, "--name", lab.name], { env: lab.env });
const pauseFlag = (host: string) => join(lab.dir, "hosts", host, "agent", "state", "paused");

describe("lab agents pause and resume", () => {
  it("say paused or resumed for the hosts named, and nothing of the others", async () => {
    const paused = await agents("pause", "lp2");
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toBe(
      "lp2: paused (from its next poll its agent applies no release, and its heartbeat says so)\n",
    );
    expect(existsSync(pauseFlag("lp2"))).toBe(true);
    expect(existsSync(pauseFlag("lp1"))).toBe(false);

    const json = await agents("pause", "lp2", "--json");
    expect(JSON.parse(json.stdout)).toEqual({
      lab: "lp",
      agents: [
        { host: "lp1", pid: expect.any(Number), paused: false },
        { host: "lp2", pid: expect.any(Number), paused: true },
      ],
    });

    // Hosts named without --name: their lab is found by them.
    const found = await nixship(["lab", "agents", "pause", "lp1"], { env: lab.env });
    expect(found.code, found.stderr).toBe(0);
    expect(found.stdout).toContain("lp1: paused");
    expect(existsSync(pauseFlag("lp1"))).toBe(true);

    const resumed = await agents("resume");
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toBe("lp1: resumed\nlp2: resumed\n");
    expect(existsSync(pauseFlag("lp2"))).toBe(false);
  });
});
