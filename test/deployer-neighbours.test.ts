// Another user on the deployer: the ssh control sockets live in the deploying
// user's private runtime directory, so a neighbour who made the well-known directory first (and
// listens there as a fake multiplexing master) gets no session, nor stops the command; the shared connections a
// command starts end with it; and the fleet's ssh paths reach `nix copy` quoted, so a
// known_hosts path with spaces works and one that looks like an option runs nothing.
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sshProcessesMentioning } from "../src/lab/lab-down.js";
import { type CliRun, nixship, run, runOk } from "../support/cli.js";
import { deployEvents, type LabInfo, setExampleSystems } from "./support/lab-deploy.js";

const LAB = "nb";
const NOBODY = 65534;
let work: string;
let lab: LabInfo;
let fleetFile: string;
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-neighbours-"));
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as LabInfo;
  fleetFile = join(lab.dir, "nixship.json");
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
  for (const dir of shared) await rm(dir, { recursive: true, force: true });
});

/** A shared /tmp of the test's own (1777, as /tmp is), which other users can reach. */
async function sharedTmp(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `nixship-${name}-`));
  await chmod(dir, 0o1777);
  shared.push(dir);
  return dir;
}
const shared: string[] = [];

/** Runs a shell command as the unprivileged user nobody. */
function asNobody(script: string, ...args: string[]): Promise<string> {
  return runOk("setpriv", [
    "--reuid",
    String(NOBODY),
    "--regid",
    String(NOBODY),
    "--clear-groups",
    "sh",
    "-c",
    script,
    "sh",
    ...args,
  ]);
}

describe("a neighbour who made nixship's runtime directory first", () => {
  it("gets no session: status works in a directory of root's own, and leaves theirs alone", async () => {
    const tmp = await sharedTmp("tmp-hostile");
    const mine = join(tmp, `nixship-${process.getuid?.() ?? 0}`);
    // nobody makes the directory root would use, open to all, and waits in it as a fake
    // master (a Unix socket that logs every connection).
    await asNobody('mkdir -m 777 "$1"', mine);
    const listener = join(tmp, "fake-master.py");
    const log = join(tmp, "fake-master.log");
    await writeFile(
      listener,
      [
        "import os, socket, sys, threading",
        "root, log = sys.argv[1], sys.argv[2]",
        "def serve(path):",
        "    s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(8)",
        "    while True:",
        "        c, _ = s.accept(); open(log, 'a').write('session\\n'); c.close()",
        "s = socket.socket(socket.AF_UNIX); s.bind(os.path.join(root, 'listening')); s.listen(1)",
        "open(log, 'a').write('ready\\n')",
        "serve(os.path.join(root, 'any'))",
      ].join("\n"),
    );
    await chmod(listener, 0o755);
    const fake = run("setpriv", [
      "--reuid",
      String(NOBODY),
      "--regid",
      String(NOBODY),
      "--clear-groups",
      "timeout",
      "60",
      "python3",
      listener,
      mine,
      log,
    ]);
    for (
      let i = 0;
      i < 100 && !(await readFile(log, "utf8").catch(() => "")).includes("ready");
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const r = await nixship(["status", "--fleet", fleetFile, "--json"], {
      env: { TMPDIR: tmp, XDG_RUNTIME_DIR: "" },
    });
    // A directory another user made first does not stop root's nixship.
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(JSON.parse(r.stdout).error).toBeUndefined();
    // Nothing was made in nobody's directory, and no session reached it.
    expect((await runOk("ls", ["-A", mine])).trim().split("\n").sort()).toEqual([
      "any",
      "listening",
    ]);
    expect(await readFile(log, "utf8")).toBe("ready\n");
    await runOk("pkill", ["-u", String(NOBODY), "-f", listener]).catch(() => "");
    await fake;
  });

  it("a directory of its own that others may write is not used", async () => {
    const tmp = await sharedTmp("tmp-open");
    const mine = join(tmp, `nixship-${process.getuid?.() ?? 0}`);
    await mkdir(mine);
    await chmod(mine, 0o777);
    const r = await nixship(["status", "--fleet", fleetFile, "--json"], {
      env: { TMPDIR: tmp, XDG_RUNTIME_DIR: "" },
    });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect((await runOk("ls", ["-A", mine])).trim()).toBe("");
  });

  it("an XDG_RUNTIME_DIR that is not the user's own is refused, naming it", async () => {
    const tmp = await sharedTmp("xdg-open");
    const r = await nixship(["status", "--fleet", fleetFile, "--json"], {
      env: { XDG_RUNTIME_DIR: tmp },
    });
    expect(r.code).toBe(1);
    const error = JSON.parse(r.stdout).error as { code: string; message: string; hint: string };
    expect(error).toMatchObject({
      code: "runtime-dir-unsafe",
      message: `XDG_RUNTIME_DIR ${tmp} has mode 777: other users may use it`,
      hint: expect.stringMatching(/remove it/),
    });
    expect(r.stderr).not.toMatch(/bug in nixship/);
  });
});

describe("the deploying user's own runtime directory", () => {
  it("holds the control sockets (0700, XDG_RUNTIME_DIR), and no shared connection outlives the command", async () => {
    // (Short: a socket path holds at most 107 bytes.)
    const xdg = await mkdtemp("/tmp/x");
    const r = await nixship(["status", "--fleet", fleetFile, "--json"], {
      env: { XDG_RUNTIME_DIR: xdg },
    });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect((await runOk("stat", ["-c", "%a %u", join(xdg, "nixship")])).trim()).toBe(
      `700 ${process.getuid?.()}`,
    );
    // The command ended its ssh master on its way out: nothing runs with a socket there.
    expect(await sshProcessesMentioning([`${xdg}/`])).toEqual([]);
    await rm(xdg, { recursive: true, force: true });
  });
});

describe("ssh options handed to nix copy (NIX_SSHOPTS)", () => {
  it("a known_hosts path with spaces works, and one with an option in it runs nothing", async () => {
    // A path whose words, split at spaces, would be: UserKnownHostsFile=DIR/a, then
    // -oProxyCommand=EVIL, then /known_hosts: every directory of it made, so it is a real file.
    const marker = join(work, "proxy-command-ran");
    const evil = join(work, "evil.sh");
    await writeFile(evil, `#!/bin/sh\ntouch ${marker}\nexit 1\n`);
    await chmod(evil, 0o755);
    const dir = join(work, `a -oProxyCommand=${evil} `);
    await mkdir(dir, { recursive: true });
    const knownHosts = join(dir, "known_hosts");
    await copyFile(join(lab.dir, "known_hosts"), knownHosts);
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as Record<string, unknown> & {
      ssh: Record<string, unknown>;
    };
    delete doc.cache;
    doc.ssh.knownHosts = knownHosts;
    const fleet = join(work, "spaced.json");
    await writeFile(fleet, JSON.stringify(doc));
    await setExampleSystems(fleet, { nb1: "web-v2" });
    const r: CliRun = await nixship(["deploy", "--fleet", fleet, "--json"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const phases = deployEvents(r)
      .filter((e) => e.type === "host-phase")
      .map((e) => e.phase);
    expect(phases).toContain("copy");
    await expect(readFile(marker)).rejects.toThrow(/ENOENT/);
  });
});
