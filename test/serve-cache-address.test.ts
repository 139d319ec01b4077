// A deploy with --serve-cache on a loopback address, to hosts on other machines, or on the
// unspecified address (0.0.0.0, ::), is refused before anything is built, pushed or changed,
// with doctor's fix; the hosts were never asked.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";

let work: string;
let fleetFile: string;
let keyFile: string;
let sshLog: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-serve-address-"));
  keyFile = join(work, "cache.sec");
  sshLog = join(work, "ssh-attempts");
  const key = await nixship(["key", "generate", "--name", "cache-1", "--out", keyFile]);
  expect(key.code, key.stderr).toBe(0);
  const cache = `file://${join(work, "cache")}`;
  const init = await nixship(["cache", "init", cache]);
  expect(init.code, init.stderr).toBe(0);
  // Any ssh to the hosts would leave a line here and fail at once.
  const sshConfig = join(work, "ssh_config");
  await writeFile(sshConfig, `Host *\n  ProxyCommand sh -c 'echo %h >> ${sshLog}; exit 1'\n`);
  fleetFile = join(work, "nixship.json");
  const system = `path:${EXAMPLES_DIR}#web-v1`;
  await writeFile(
    fleetFile,
    JSON.stringify({
      cache: { url: cache, publicKeys: [key.stdout.trim()] },
      ssh: { configFile: sshConfig },
      hosts: {
        web1: { address: "10.99.0.2", system },
        web2: { address: "10.99.0.3", system },
      },
    }),
  );
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("deploy --serve-cache", () => {
  it("refuses a loopback address for remote hosts before anything happens, with the fix", async () => {
    const r = await nixship([
      "deploy",
      "--fleet",
      fleetFile,
      "--key",
      keyFile,
      "--serve-cache",
      "127.0.0.1:0",
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(
      "error: --serve-cache 127.0.0.1:0 is a loopback address, which only this machine reaches: web1, web2 would fail to substitute their systems from it",
    );
    expect(r.stderr).toContain(
      'hint: serve the cache on an address of this machine the hosts can reach (a lab\'s: --serve-cache "$(nixship lab address --name NAME):0")',
    );
    // Nothing was built or pushed, and no host was reached.
    expect(r.stderr).not.toMatch(/building|pushing/);
    await expect(readFile(sshLog, "utf8")).rejects.toThrow(/ENOENT/);
  });

  it("refuses the unspecified address, which names no machine, before anything happens", async () => {
    for (const [value, url] of [
      ["0.0.0.0:0", "http://0.0.0.0:…"],
      ["[::]:8080", "http://[::]:8080"],
    ]) {
      const r = await nixship([
        "deploy",
        "--fleet",
        fleetFile,
        "--key",
        keyFile,
        "--serve-cache",
        value as string,
      ]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(
        `error: --serve-cache ${value} is the unspecified address: the cache would listen on every interface, but the URL the hosts are told to fetch from (${url}) names no machine`,
      );
      expect(r.stderr).toContain(
        "hint: serve the cache on an address of this machine the hosts can reach",
      );
      expect(r.stderr).not.toMatch(/building|pushing/);
      await expect(readFile(sshLog, "utf8")).rejects.toThrow(/ENOENT/);
    }
  });
});
