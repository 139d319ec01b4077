// The agent publishes its host's SSH host key for `secrets rekey`; the store's trouble there
// (an object too large to be a key, a PUT refused) never stops it applying releases.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ed25519PublicKeyLine } from "../../support/ssh-key-line.js";
import { hostKeyObjectKey } from "../status/host-key-store.js";
import { FsStore } from "../store/fs-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { AgentReporter } from "./agent-reporter.js";

let dir: string;
let store: FsStore;
let keyFile: string;
let key: string;

function reporterOn(target: ObjectStore, storeErrors: string[]): AgentReporter {
  return new AgentReporter({
    store: target,
    channel: "prod",
    host: "web1",
    hostKeyFile: keyFile,
    pollInterval: 1,
    jitter: 0,
    lastSeq: () => null,
    now: () => new Date().toISOString(),
    warn: (message) => {
      throw new Error(`unexpected warning: ${message}`);
    },
    storeError: (message) => storeErrors.push(message),
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-agent-host-key-"));
  store = new FsStore(join(dir, "store"));
  keyFile = join(dir, "ssh_host_ed25519_key.pub");
  key = ed25519PublicKeyLine();
  await writeFile(keyFile, `${key} root@web1\n`);
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const stored = () => readFile(join(dir, "store", hostKeyObjectKey("web1")), "utf8");

describe("AgentReporter.publishHostKey", () => {
  it("replaces an object at the host's key too large to be a key (it threw at every poll)", async () => {
    const big = Buffer.alloc(5000, 0x61);
    await store.put(hostKeyObjectKey("web1"), big, { size: big.length });
    const errors: string[] = [];
    await reporterOn(store, errors).publishHostKey();
    expect(errors).toEqual([]);
    expect(await stored()).toBe(`${key}\n`);
  });

  it("a store that refuses the key: said once, the poll goes on, and a later poll publishes it", async () => {
    let refusing = true;
    const refusal = new Proxy(store, {
      get(target, property) {
        if (property === "put" && refusing) {
          return async () => {
            throw new Error("AccessDenied: not allowed to write status/host-keys/web1.pub");
          };
        }
        const value = Reflect.get(target, property) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const errors: string[] = [];
    const reporter = reporterOn(refusal, errors);
    await reporter.publishHostKey();
    await reporter.publishHostKey();
    expect(errors).toEqual([
      "this host's SSH host key could not be published (tried again at the next poll): AccessDenied: not allowed to write status/host-keys/web1.pub",
    ]);
    refusing = false;
    await reporter.publishHostKey();
    expect(await stored()).toBe(`${key}\n`);
    expect(errors).toHaveLength(1);
  });
});
