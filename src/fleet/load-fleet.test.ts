import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadFleet } from "./load-fleet.js";

describe("loadFleet", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "nixship-fleet-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a fleet file and resolves its ssh paths against its directory", async () => {
    const file = join(dir, "nixship.json");
    const doc = {
      ssh: { configFile: "lab/ssh_config", knownHosts: "/etc/ssh/ssh_known_hosts" },
      hosts: { web1: { address: "10.0.0.2", system: ".#web" } },
    };
    await writeFile(file, JSON.stringify(doc));
    const fleet = await loadFleet(file);
    expect(fleet.ssh.configFile).toBe(join(dir, "lab/ssh_config"));
    expect(fleet.ssh.knownHosts).toBe("/etc/ssh/ssh_known_hosts");
    expect(fleet.hosts.map((h) => h.name)).toEqual(["web1"]);
  });

  it("names the file in errors", async () => {
    const file = join(dir, "nixship.json");
    await writeFile(file, '{"hosts": {"web1": {"system": ".#web"}}}');
    await expect(loadFleet(file)).rejects.toThrow(`${file}: hosts.web1: an ssh host needs`);
  });

  it("says when there is no file", async () => {
    await expect(loadFleet(join(dir, "missing.json"))).rejects.toMatchObject({
      code: "fleet-file-unreadable",
      exitCode: 2,
      message: expect.stringMatching(/missing\.json: no such file$/),
    });
  });
});
