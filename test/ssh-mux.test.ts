// Ending ssh masters over their control sockets (src/delivery/ssh-mux.ts): a real OpenSSH
// master to a lab host, asked to terminate as `ssh -O exit` would; sockets that are not masters.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlSockets, terminateMaster, terminateMasters } from "../src/delivery/ssh-mux.js";
import { sshProcessesMentioning } from "../src/lab/lab-down.js";
import { run } from "../support/cli.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let dir: string;

beforeAll(async () => {
  lab = await startSshLab("mux", 1);
  // Short: a socket path holds at most 107 bytes.
  dir = await mkdtemp("/tmp/mux-");
}, 120_000);

afterAll(async () => {
  await lab?.down();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Starts a master for the lab's host with ControlPath `PREFIX%C`; gives its socket. */
async function startMaster(prefix: string): Promise<string> {
  const r = await run("ssh", [
    "-F",
    join(lab.info.dir, "ssh_config"),
    "-o",
    "ControlMaster=yes",
    "-o",
    `ControlPath=${prefix}%C`,
    "-o",
    "ControlPersist=60",
    "mux1",
    "true",
  ]);
  expect(r.code, r.stderr).toBe(0);
  const sockets = await controlSockets(prefix);
  expect(sockets).toHaveLength(1);
  return sockets[0] as string;
}

function listen(path: string, onConnection: Parameters<typeof createServer>[1]): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer(onConnection);
    server.listen(path, () => resolve(server));
  });
}

describe("terminateMaster", () => {
  it("ends a real ssh master as ssh -O exit does: it exits and removes its socket", async () => {
    const prefix = join(dir, "a-");
    const socket = await startMaster(prefix);
    expect(await sshProcessesMentioning([prefix])).toHaveLength(1);
    expect(await terminateMaster(socket)).toEqual({ status: "terminated" });
    for (let i = 0; i < 50 && (await sshProcessesMentioning([prefix])).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await sshProcessesMentioning([prefix])).toEqual([]);
    expect(await controlSockets(prefix)).toEqual([]);
    // Asked again, nothing listens there.
    expect(await terminateMaster(socket)).toEqual({ status: "gone" });
  });

  it("finds only the masters under its prefix, and ends them all", async () => {
    const mine = join(dir, "m-");
    const socket = await startMaster(mine);
    const other = await startMaster(join(dir, "o-"));
    // Neither a file with a master's name nor ssh's temporary socket name is a master.
    await writeFile(`${mine}0123456789abcdef`, "");
    await writeFile(`${socket}.XXXXXXXXXXXXXXXX`, "");
    expect(await controlSockets(mine)).toEqual([socket]);
    expect(await terminateMasters([mine, join(dir, "none-")])).toEqual([{ status: "terminated" }]);
    expect(await terminateMaster(other)).toEqual({ status: "terminated" });
  });

  it("names a socket that is not an ssh master, and one that never answers, within its deadline", async () => {
    const liar = join(dir, "liar");
    const server = await listen(liar, (c) => c.end(Buffer.from("SSH-2.0-not-a-master\r\n")));
    const said = await terminateMaster(liar);
    expect(said.status).toBe("failed");
    expect(said).toMatchObject({ why: expect.stringMatching(/^not an ssh master/) });
    server.close();
    const silent = join(dir, "silent");
    const quiet = await listen(silent, () => undefined);
    const started = Date.now();
    expect(await terminateMaster(silent, 300)).toEqual({
      status: "failed",
      why: "no answer within 0.3s",
    });
    expect(Date.now() - started).toBeLessThan(5000);
    quiet.close();
  });
});
