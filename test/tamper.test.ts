// A tampered narinfo (bad signature, untrusted key) or a tampered NAR is refused
// by `nixship verify`, by `nixship fetch`, and by Nix itself reading through `cache serve`.
import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixCopyFrom, nixship, run } from "../support/cli.js";
import { startCacheServer } from "../support/serve.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";

let work: string;
let root: string;
let pristine: string;
let secret: string;
let pub: string;
let strangerPub: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-tamper-"));
  root = await buildFixtureClosure();
  secret = join(work, "k.sec");
  pub = (await nixship(["key", "generate", "--name", "tamper-1", "--out", secret])).stdout.trim();
  strangerPub = (
    await nixship(["key", "generate", "--name", "tamper-1", "--out", join(work, "s.sec")])
  ).stdout.trim();
  pristine = join(work, "pristine");
  const r = await nixship([
    "push",
    root,
    "--to",
    `file://${pristine}`,
    "--key",
    secret,
    "--compression",
    "none",
  ]);
  expect(r.code, r.stderr).toBe(0);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const rootHash = () => root.slice("/nix/store/".length, "/nix/store/".length + 32);

async function copyCache(name: string): Promise<string> {
  const dir = join(work, name);
  await cp(pristine, dir, { recursive: true });
  return dir;
}

type Tamper = (cache: string) => Promise<void>;

const tamperings: [string, Tamper, RegExp, "OURS" | "STRANGER"][] = [
  [
    "a narinfo whose NarSize was changed (bad signature)",
    async (cache) => {
      const f = join(cache, `${rootHash()}.narinfo`);
      const text = await readFile(f, "utf8");
      await writeFile(
        f,
        text.replace(/NarSize: (\d+)/, (_m, n) => `NarSize: ${Number(n) + 8}`),
      );
    },
    /does not match the narinfo's contents/,
    "OURS",
  ],
  [
    "a narinfo re-signed by an untrusted key",
    async (cache) => {
      const f = join(cache, `${rootHash()}.narinfo`);
      const text = await readFile(f, "utf8");
      await writeFile(
        f,
        text.replace(/^Sig: .*$/m, "Sig: intruder-1:".concat("A".repeat(86), "==")),
      );
    },
    /signature by 'intruder-1' is from a key that is not trusted/,
    "OURS",
  ],
  [
    "a cache checked against a key that did not sign it",
    async () => {},
    /does not match the narinfo's contents/,
    "STRANGER",
  ],
  [
    "a NAR with changed bytes",
    async (cache) => {
      const text = await readFile(join(cache, `${rootHash()}.narinfo`), "utf8");
      const url = /^URL: (.*)$/m.exec(text)?.[1] as string;
      const nar = await readFile(join(cache, url));
      // Change a byte of file content (not framing), so the NAR stays well-formed.
      const at = nar.indexOf("nixship-fixture-tool\n");
      expect(at).toBeGreaterThan(0);
      nar[at] = "N".charCodeAt(0);
      await writeFile(join(cache, url), nar);
    },
    /has hash sha256:\w+, but the narinfo says FileHash/,
    "OURS",
  ],
];

describe.each(tamperings)("%s", (label, tamper, message, trustedKey) => {
  let cache: string;
  let trusted: string;

  beforeAll(async () => {
    cache = await copyCache(label.replace(/\W+/g, "-"));
    await tamper(cache);
    trusted = trustedKey === "STRANGER" ? strangerPub : pub;
  });

  it("is reported by nixship verify, by path, with exit 1", async () => {
    const r = await nixship([
      "verify",
      "--cache",
      `file://${cache}`,
      "--trusted-key",
      trusted,
      "--json",
    ]);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    const problem = report.problems.find((p: { path: string }) => p.path === root);
    expect(problem?.message).toMatch(message);
  });

  it("is refused by nixship fetch, which leaves nothing behind", async () => {
    const dir = join(work, `restore-${label.replace(/\W+/g, "-")}`);
    const r = await nixship([
      "fetch",
      root,
      "--from",
      `file://${cache}`,
      "--trusted-key",
      trusted,
      "--restore",
      dir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);
    expect((await readdir(work)).filter((n) => n.includes("nixship-fetch"))).toEqual([]);
    const store = join(work, `import-${label.replace(/\W+/g, "-")}`);
    const imp = await nixship([
      "fetch",
      root,
      "--from",
      `file://${cache}`,
      "--trusted-key",
      trusted,
      "--import",
      "--store",
      store,
    ]);
    expect(imp.code).toBe(1);
    const valid = await run("nix-store", ["--store", store, "--check-validity", root]);
    expect(valid.code).not.toBe(0);
  });

  it("is refused by Nix reading through cache serve", async () => {
    const server = await startCacheServer(`file://${cache}`);
    try {
      const store = join(work, `nix-${label.replace(/\W+/g, "-")}`);
      const r = await nixCopyFrom(server.url, store, trusted, root);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/lacks a valid signature|hash mismatch|not signed|NAR hash/i);
      const valid = await run("nix-store", ["--store", store, "--check-validity", root]);
      expect(valid.code).not.toBe(0);
    } finally {
      await server.stop();
    }
  });
});
