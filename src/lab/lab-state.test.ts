// A lab's record of itself is read only when every host in it has the fields the lab commands
// use: a damaged one (a hand edit, a disk) is "not a lab state file", with the way out, where
// `lab list` used to fail with "Cannot read properties of null (reading 'netns')".
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_STATE_FILE, listLabStates, readLabState } from "./lab-state.js";

const HOST = { name: "web1", address: "10.1.0.2", netns: "nixship-lab-web1", pid: 123 };
const STATE = { version: 1, name: "l", number: 3, createdAt: "2026-12-01T00:00:00Z" };
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-lab-state-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function stateWith(hosts: unknown[]): Promise<string> {
  const lab = await mkdtemp(join(dir, "lab-"));
  await writeFile(join(lab, LAB_STATE_FILE), JSON.stringify({ ...STATE, hosts }));
  return lab;
}

describe("readLabState", () => {
  it("reads a lab whose hosts have their fields", async () => {
    const lab = await stateWith([HOST, { ...HOST, name: "web2", agentPid: 7 }]);
    expect((await readLabState(lab))?.hosts.map((h) => h.name)).toEqual(["web1", "web2"]);
  });

  it.each([
    [null, "hosts[1] is not an object"],
    [{ ...HOST, netns: undefined }, "hosts[1] has no netns"],
    [{ ...HOST, pid: "abc" }, "hosts[1] has no pid (a whole number)"],
    [{ ...HOST, agentPid: -1 }, "hosts[1] has no agentPid (a whole number)"],
  ])("refuses a host %j, naming it and the way out", async (bad, problem) => {
    const lab = await stateWith([HOST, bad]);
    await expect(readLabState(lab)).rejects.toMatchObject({
      code: "bad-lab-state",
      message: `${join(lab, LAB_STATE_FILE)} is not a lab state file: ${problem}`,
      hint: "'nixship lab down --all' cleans up every lab, whatever its files say",
    });
  });

  it("leaves such a lab out of the list, as a state caught mid-write is", async () => {
    const labs = await mkdtemp(join(dir, "labs-"));
    for (const [name, hosts] of [
      ["good", [HOST]],
      ["damaged", [null]],
    ] as const) {
      await mkdir(join(labs, name));
      await writeFile(join(labs, name, LAB_STATE_FILE), JSON.stringify({ ...STATE, name, hosts }));
    }
    expect((await listLabStates(labs)).map((s) => s.name)).toEqual(["good"]);
  });
});
