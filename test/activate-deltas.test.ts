// Deltas on the host, over ssh on a lab host with the real Nix and sshd: a host
// updated across a rebuild of its system (every path new, the same names) gets most paths by
// delta (counted at the cache: delta/ against nar/ requests), runs the new system, and its store
// verifies them; a delta with flipped bits, one made against another base, one that expands
// without bound and one that rebuilds the wrong bytes each give their path whole, and the activation succeeds. The deltas are the
// deployer's own (publishDelta); the delta tool a stand-in store path holding Debian's zstd.

import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deltaNarKey } from "../src/cache/delta-path.js";
import { type DeltaOutcome, publishDelta } from "../src/cache/delta-publish.js";
import { scriptInput } from "../src/host/activation.js";
import { checkActivationResult } from "../src/host/activation-result.js";
import { parseDrvName } from "../src/nix/closure-diff.js";
import { Sha256 } from "../src/nix/hash.js";
import { parseSecretKey } from "../src/nix/keys.js";
import { formatNarInfo, parseNarInfo, signNarInfo } from "../src/nix/narinfo.js";
import type { StorePath } from "../src/nix/store-path.js";
import { readAll } from "../src/store/helpers.js";
import { openStore } from "../src/store/url.js";
import { type CliRun, nixStoreDump, nixship, run, runOk } from "../support/cli.js";
import { type RunningServer, startCacheServer } from "../support/serve.js";
import { buildDeltaTool } from "./support/delta-fleet.js";
import { type FreshSystems, ownSystems, PINNED_FILES } from "./support/fresh-systems.js";
import type { LabInfo } from "./support/lab-deploy.js";

const LAB = "dlt";
// Each build of this system has store paths of its own (a nonce) with the same names: a
// rebuild, as a change low in the graph makes one.
// Its libraries are large enough for a delta to be worth it; its toplevel, etc and kernel are
// not (their deltas would be larger than they are): those come whole.
const SYSTEM =
  'name = "web-v1"; version = "v1"; libraries = { a = 48; b = 48; c = 48; d = 48; e = 48; };';

/** The targets of the deltas published (the pairs worth it). */
const worthIt = (outcomes: readonly DeltaOutcome[]) =>
  outcomes.filter((o) => o.kind === "published").map((o) => o.pair.target);

let work: string;
let lab: LabInfo;
let cacheUrl: string;
let publicKey: string;
let server: RunningServer | undefined;
let proxy: Server | undefined;
let proxyUrl: string;
let tool: string;
const flakes: FreshSystems[] = [];
/** The cache's requests since the last reset, by their first path segment ("nar", "delta"). */
const requests = new Map<string, number>();
/** The narinfos asked since the last reset, by their name (HASH.narinfo). */
const narinfosAsked = new Map<string, number>();
/** Narinfos the proxy answers itself (HASH.narinfo: its body), as a bucket a writer changed. */
const planted = new Map<string, string>();

const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });

function onHost(command: string): Promise<CliRun> {
  return run("ssh", ["-F", join(lab.dir, "ssh_config"), "dlt1", command]);
}

/** `nix build` (Nix 2.8: --json, not --print-out-paths); the one output's store path. */
async function nixBuild(...args: string[]): Promise<StorePath> {
  const built = JSON.parse(await runOk("nix", ["build", "--no-link", "--json", ...args])) as {
    outputs: { out: StorePath };
  }[];
  return built[0]?.outputs.out as StorePath;
}

/** `pinned`: with nixship-activate trusting `publicKey` at the proxy, as a pinned host's is. */
async function buildSystem(pinned = false): Promise<StorePath> {
  const trust = `pinned = { substituters = [ "${proxyUrl}" ]; trustedKeys = [ "${publicKey}" ]; ${PINNED_FILES} };`;
  const flake = await ownSystems({ web: pinned ? `${SYSTEM} ${trust}` : SYSTEM });
  flakes.push(flake);
  return nixBuild(`path:${flake.dir}#web`);
}

async function push(...paths: string[]): Promise<void> {
  const r = await nixship([
    "push",
    ...paths,
    "--to",
    cacheUrl,
    "--key",
    join(lab.dir, "cache.sec"),
  ]);
  expect(r.code, r.stderr).toBe(0);
}

async function closure(path: string): Promise<StorePath[]> {
  return (await runOk("nix-store", ["-qR", path])).trim().split("\n") as StorePath[];
}

const packageOf = (path: string) => parseDrvName(path.slice("/nix/store/".length + 33)).name;

/**
 * Publishes a delta for each path of `to`'s closure that `from`'s lacks, against the path of
 * `from`'s closure with its package name (the host's rule); `zstdFor` picks the zstd run.
 */
async function publishDeltas(
  from: string,
  to: string,
  zstdFor: (target: StorePath) => string | undefined = () => undefined,
): Promise<DeltaOutcome[]> {
  const old = await closure(from);
  const store = await openStore(cacheUrl);
  const key = parseSecretKey(await readFile(join(lab.dir, "cache.sec"), "utf8"));
  const outcomes: DeltaOutcome[] = [];
  for (const target of await closure(to)) {
    if (old.includes(target)) continue;
    const base = old.find((p) => packageOf(p) === packageOf(target));
    if (base === undefined) continue;
    const zstd = zstdFor(target);
    outcomes.push(await publishDelta(store, key, { target, base }, zstd ? { zstd } : {}));
  }
  return outcomes;
}

type Answer = {
  ok: boolean;
  result: string;
  path?: string;
  message?: string;
  delta?: {
    paths: number;
    bytes: number;
    narBytes: number;
    wholePaths: number;
    wholeNarBytes: number;
    failed: number;
    skipped?: string;
  };
};

async function activate(
  path: string,
  ...extra: string[]
): Promise<{ answer: Answer; log: string }> {
  return activateWith({}, path, ...extra);
}

/** activate.sh on the host, with `variables` set before it in its input (NIXSHIP_TRUST_FILE). */
function withoutPath(variables: Record<string, string>): Record<string, string> {
  const { PATH: _, ...rest } = variables;
  return rest;
}

async function activateWith(
  variables: Record<string, string>,
  path: string,
  ...extra: string[]
): Promise<{ answer: Answer; log: string }> {
  const r = await run(
    "ssh",
    [
      "-F",
      join(lab.dir, "ssh_config"),
      "dlt1",
      // A PATH given goes before the host's own, as nixship-activate's wrapper sets it.
      `${variables.PATH === undefined ? "" : `PATH=${variables.PATH}:$PATH `}sh -s -- activate --path`,
      path,
      "--substituter",
      proxyUrl,
      "--trusted-key",
      publicKey,
      "--activation-timeout",
      "300",
      ...extra,
    ],
    { input: Buffer.from(scriptInput(withoutPath(variables))) },
  );
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  // As the deployer takes it: checked field by field (the delta report too).
  const answer = checkActivationResult(JSON.parse(last));
  if ("problem" in answer) throw new Error(`${answer.problem}\n${r.stderr}`);
  return { answer: answer as unknown as Answer, log: r.stderr };
}

/** Starts the lab (`lab up` options in `extra`), its cache served through the counting proxy. */
async function startLab(...extra: string[]): Promise<void> {
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json", ...extra], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as LabInfo;
  const fleet = JSON.parse(await readFile(join(lab.dir, "nixship.json"), "utf8")) as {
    cache: { url: string; publicKeys: string[] };
  };
  cacheUrl = fleet.cache.url;
  publicKey = fleet.cache.publicKeys[0] as string;
  await push(tool);
  const served = await startCacheServer(cacheUrl);
  server = served;
  const upstream = new URL(served.url);
  // The host reaches the cache through this proxy on the lab's bridge, which counts requests.
  proxy = createServer((req, res) => {
    const first = (req.url ?? "/").split("/")[1] ?? "";
    const kind = first.endsWith(".narinfo") ? "narinfo" : first;
    requests.set(kind, (requests.get(kind) ?? 0) + 1);
    if (kind === "narinfo") narinfosAsked.set(first, (narinfosAsked.get(first) ?? 0) + 1);
    const body = planted.get(first);
    if (body !== undefined) {
      res.writeHead(200, { "content-type": "text/x-nix-narinfo" }).end(body);
      return;
    }
    const forward = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        path: req.url,
        method: req.method,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on("error", () => res.destroy());
    req.pipe(forward);
  });
  const started = proxy;
  await new Promise<void>((done) => started.listen(0, `10.231.${lab.number}.1`, done));
  proxyUrl = `http://10.231.${lab.number}.1:${(started.address() as AddressInfo).port}`;
}

async function stopLab(): Promise<void> {
  const [running, served] = [proxy, server];
  proxy = undefined;
  server = undefined;
  if (running) await new Promise<void>((done) => running.close(() => done()));
  await served?.stop();
  await nixship(["lab", "down", "--name", LAB], { env: env() });
}

/**
 * The host runs a system, then a rebuild of it, by delta: checks that every path it lacked came
 * by delta (counted by the host and at the cache), that it runs the rebuild, that its store
 * verifies the paths, and that nothing of the step is left. Returns both systems.
 */
async function updateAcrossRebuild(): Promise<{ first: StorePath; second: StorePath }> {
  const first = await buildSystem();
  const second = await buildSystem();
  await push(first, second);
  const deployed = await activate(first);
  expect(deployed.answer, deployed.log).toMatchObject({ ok: true, result: "activated" });

  const published = await publishDeltas(first, second);
  requests.clear();
  narinfosAsked.clear();
  const { answer, log } = await activate(second, "--delta-tool", tool);
  expect(answer, log).toMatchObject({ ok: true, result: "activated", path: second });
  expect((await onHost("readlink /run/current-system")).stdout.trim()).toBe(second);
  const old = await closure(first);
  const lacking = (await closure(second)).filter((p) => !old.includes(p));
  // Most paths the host lacked had a delta worth publishing (the rest were not worth it), and
  // each of those came by it.
  const worth = worthIt(published);
  expect(published.map((o) => o.kind).filter((k) => k !== "skipped" && k !== "published")).toEqual(
    [],
  );
  expect(worth.length).toBeGreaterThan(lacking.length / 2);
  const delta = answer.delta;
  expect(delta, log).toMatchObject({
    paths: worth.length,
    wholePaths: lacking.length - worth.length,
    failed: 0,
  });
  expect(delta?.bytes).toBeGreaterThan(0);
  expect(delta?.bytes).toBeLessThan(delta?.narBytes ?? 0);
  // Each figure is the NAR bytes of its paths: the delta paths fetched, the paths rebuilt from
  // them, and those that came whole.
  const narSizes = async (paths: readonly string[]) =>
    paths.length === 0
      ? 0
      : (await runOk("nix-store", ["-q", "--size", ...paths]))
          .trim()
          .split("\n")
          .reduce((sum, n) => sum + Number(n), 0);
  expect(delta?.bytes).toBe(
    published.reduce((sum, o) => sum + (o.kind === "published" ? o.deltaBytes : 0), 0),
  );
  expect(delta?.narBytes).toBe(await narSizes(worth));
  expect(delta?.wholeNarBytes).toBe(await narSizes(lacking.filter((p) => !worth.includes(p))));
  expect(log).toMatch(new RegExp(`deltas: ${worth.length} paths came by delta`));
  // Nix's noise about roots, which the realise that follows adds, stays out of the host's log.
  expect(log).not.toContain("--add-root");
  // Counted at the cache: those paths came as deltas; the NARs are the others' and the tool's.
  expect(Object.fromEntries(requests)).toMatchObject({
    delta: worth.length,
    nar: 1 + lacking.length - worth.length,
  });
  // Each delta's narinfo asked once by the step's listing, and at most once by its fetch: the
  // lab's hosts keep no narinfo answer (narinfo-cache-positive-ttl = 0), and Nix then asked again
  // for each path as it came to fetch it, one round trip a path.
  const deltaNarinfos = published.flatMap((o) =>
    o.kind === "published"
      ? [`${o.deltaPath.slice("/nix/store/".length, "/nix/store/".length + 32)}.narinfo`]
      : [],
  );
  expect(deltaNarinfos.map((n) => [n, narinfosAsked.get(n) ?? 0])).toEqual(
    deltaNarinfos.map((n) => [n, expect.toBeOneOf([1, 2])]),
  );
  const verified = await onHost(`nix-store --verify-path ${lacking.join(" ")}`);
  expect(verified.code, verified.stderr).toBe(0);
  // Nothing of the step is left: its work directory, nor the deltas in the store.
  expect(await leftOnHost()).toMatch(/No such file or directory\n0\n$/);
  return { first, second };
}

/**
 * Makes the delta at `deltaPath` again as a deployer with the cache's key could have: its files
 * restored, its copy of the target's narinfo changed by `edit`, packed, and its narinfo signed.
 */
async function remakeDelta(deltaPath: StorePath, edit: (narinfo: string) => string): Promise<void> {
  const store = await openStore(cacheUrl);
  const key = parseSecretKey(await readFile(join(lab.dir, "cache.sec"), "utf8"));
  const name = `${deltaPath.slice("/nix/store/".length, "/nix/store/".length + 32)}.narinfo`;
  const info = parseNarInfo(Buffer.from((await readAll(store, name, 65536)) ?? "").toString());
  const tree = join(await mkdtemp(join(work, "remade-")), "delta");
  await runOk("nix-store", ["--restore", tree], {
    input: Buffer.from((await readAll(store, info.url, 1 << 26)) ?? ""),
  });
  await chmod(tree, 0o755);
  await chmod(join(tree, "narinfo"), 0o644);
  await writeFile(join(tree, "narinfo"), edit(await readFile(join(tree, "narinfo"), "utf8")));
  const nar = nixStoreDump(tree);
  const hash = Sha256.of(nar);
  const url = deltaNarKey(hash);
  await store.put(url, nar);
  const remade = { ...info, url, fileHash: hash, fileSize: nar.length, narHash: hash };
  await store.put(
    name,
    Buffer.from(formatNarInfo(signNarInfo({ ...remade, narSize: nar.length, sigs: [] }, key))),
  );
  await store.close();
}

/** The delta path of a published outcome. */
const deltaOf = (outcomes: readonly DeltaOutcome[], index: number): StorePath => {
  const o = outcomes.filter((x) => x.kind === "published")[index];
  if (o?.kind !== "published") throw new Error(`no published delta ${index}`);
  return o.deltaPath;
};

/** What the delta step leaves on the host: its work directory (absent) and the delta paths. */
async function leftOnHost(): Promise<string> {
  return (
    await onHost(
      "ls /nix/var/nixship/delta-work 2>&1; ls -d /nix/store/*-nixship-delta-* 2>/dev/null | wc -l",
    )
  ).stdout;
}

/**
 * An activation whose realise fails after the delta step fetched its deltas (a path that comes
 * whole has lost its NAR in the cache): it fails in the realise, and nothing of the step is left,
 * neither its work directory nor the delta paths it fetched into the store.
 */
async function failAfterTheStep(): Promise<void> {
  const first = await buildSystem();
  const second = await buildSystem();
  await push(first, second);
  const deployed = await activate(first);
  expect(deployed.answer, deployed.log).toMatchObject({ ok: true, result: "activated" });
  const worth = worthIt(await publishDeltas(first, second));
  expect(worth.length).toBeGreaterThan(0);
  const old = await closure(first);
  const whole = (await closure(second)).find((p) => !old.includes(p) && !worth.includes(p));
  expect(whole).toBeDefined();
  const store = await openStore(cacheUrl);
  const hash = (whole as string).slice("/nix/store/".length, "/nix/store/".length + 32);
  const narinfo = await readAll(store, `${hash}.narinfo`, 65536);
  if (narinfo === undefined) throw new Error(`no narinfo for ${whole}`);
  await store.delete(parseNarInfo(Buffer.from(narinfo).toString("utf8")).url);
  await store.close();

  requests.clear();
  const { answer, log } = await activate(second, "--delta-tool", tool);
  expect(answer, log).toMatchObject({ ok: false, result: "failed", path: second });
  expect(log).toContain("deltas: fetching");
  expect(requests.get("delta")).toBe(worth.length);
  expect((await onHost("readlink /run/current-system")).stdout.trim()).toBe(first);
  expect(await leftOnHost()).toMatch(/No such file or directory\n0\n$/);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-activate-deltas-"));
  // A stand-in for nixpkgs' zstd: a store path whose bin/zstd is Debian's.
  tool = await buildDeltaTool();
});

afterAll(async () => {
  await stopLab();
  for (const flake of flakes) await flake.remove();
  await rm(work, { recursive: true, force: true });
});

describe("activate --delta-tool on a lab host (Nix 2.8)", () => {
  let second: StorePath;

  beforeAll(() => startLab());
  afterAll(() => stopLab());

  it("a host updated across a rebuild gets most paths by delta, runs the new system, and its store verifies them", async () => {
    ({ second } = await updateAcrossRebuild());
  });

  it("a delta with flipped bits, one made against another base, one that expands without bound and one that rebuilds the wrong bytes: those paths come whole, the activation succeeds", async () => {
    const third = await buildSystem();
    await push(third);
    // Four zstd runs of a deployer gone wrong, each for one path: the patch's bits flipped,
    // the patch made from another NAR than the base it names (the target's own: a small delta,
    // which rebuilds something else from the true base), a patch that expands to 16 MiB of
    // zeros, far past the target's NarSize, and a patch true to its base that rebuilds the
    // target with one byte changed (its size right, its hash wrong). (The web program's NAR is the same in every build:
    // only a changed path can show a wrong base.)
    const flip = `flip() { byte=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
printf "\\$(printf %o $((byte ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }`;
    const wrappers = {
      flipped: `zstd "$@" || exit; for out; do :; done
flip "$out" $(($(stat -c %s "$out") / 2))`,
      otherBase: `for a; do case $a in -o) break ;; esac; target=$a; done
cp "$target" "$target.as-base"
for a; do shift; case $a in --patch-from=*) a=--patch-from=$target.as-base ;; esac; set -- "$@" "$a"; done
exec zstd "$@"`,
      unbounded: `for out; do :; done
head -c 16777216 /dev/zero | zstd -q -1 -c >"$out"`,
      wrongBytes: `for a; do case $a in -o) break ;; esac; target=$a; done
cp "$target" "$target.changed"
flip "$target.changed" $(($(stat -c %s "$target.changed") / 2))
for a; do shift; [ "$a" = "$target" ] && a=$target.changed; set -- "$@" "$a"; done
exec zstd "$@"`,
    };
    const zstdOf: Record<string, string> = {};
    for (const [name, body] of Object.entries(wrappers)) {
      const file = join(work, `zstd-${name}`);
      await writeFile(
        file,
        `#!/bin/sh\ncase $1 in --version) exec zstd --version ;; esac\n${flip}\n${body}\n`,
      );
      await chmod(file, 0o755);
      zstdOf[name] = file;
    }
    const bad: Record<string, string> = {
      liba: "flipped",
      libb: "otherBase",
      libc: "unbounded",
      libd: "wrongBytes",
    };
    const published = await publishDeltas(second, third, (target) => {
      const mode = bad[packageOf(target)];
      return mode === undefined ? undefined : zstdOf[mode];
    });
    const old = await closure(second);
    const lacking = (await closure(third)).filter((p) => !old.includes(p));
    const worth = worthIt(published);
    for (const name of Object.keys(bad)) {
      expect(worth.some((p) => packageOf(p) === name)).toBe(true);
    }

    requests.clear();
    const { answer, log } = await activate(third, "--delta-tool", tool);
    expect(answer, log).toMatchObject({ ok: true, result: "activated", path: third });
    expect((await onHost("readlink /run/current-system")).stdout.trim()).toBe(third);
    const failed = Object.keys(bad).length;
    expect(answer.delta, log).toMatchObject({
      paths: worth.length - failed,
      wholePaths: lacking.length - worth.length + failed,
      failed,
    });
    // zstd's own checksum stops the flipped bits and the other base; the file size limit the
    // expansion; the host's hash of the NAR rebuilt the wrong bytes.
    const why: Record<string, string> = {
      liba: "zstd could not apply it",
      libb: "zstd could not apply it",
      libc: "zstd could not apply it",
      libd: "the NAR zstd gives is not the narinfo NarHash",
    };
    for (const name of Object.keys(bad)) {
      const target = lacking.find((p) => packageOf(p) === name);
      expect(log).toContain(`deltas: ${target} comes whole: the delta from`);
      expect(log).toMatch(new RegExp(`${target} comes whole: the delta from \\S+: ${why[name]}`));
    }
    expect(log).toContain("File size limit exceeded");
    // The four came whole from the cache (with those not worth a delta), the rest by delta.
    expect(Object.fromEntries(requests)).toMatchObject({
      delta: worth.length,
      nar: lacking.length - worth.length + failed,
    });
    const verified = await onHost(`nix-store --verify-path ${lacking.join(" ")}`);
    expect(verified.code, verified.stderr).toBe(0);
  });

  it("a pinned host takes only a delta tool signed by a key it pins (an unsigned one is not run, and every path comes whole), or the zstd of nixship-activate's closure", async () => {
    const trust = "/nix/var/nixship-pinned/trust";
    const pinned = await onHost(
      `mkdir -p /nix/var/nixship-pinned && printf 'substituter %s\\ntrusted-key %s\\n' '${proxyUrl}' '${publicKey}' > ${trust} && chmod 644 ${trust}`,
    );
    expect(pinned.code, pinned.stderr).toBe(0);
    // The same zstd, added to the host's store by hand: content-addressed, signed by no one.
    const added = await onHost(
      "d=$(mktemp -d) && mkdir -p $d/zstd/bin && cp /usr/bin/zstd $d/zstd/bin/ && nix-store --add $d/zstd",
    );
    expect(added.code, added.stderr).toBe(0);
    const unsigned = added.stdout.trim();
    const fourth = await buildSystem(true);
    await push(fourth);
    await publishDeltas(second, fourth);
    const old = await closure(second);
    const lacking = (await closure(fourth)).filter((p) => !old.includes(p));

    requests.clear();
    const refused = await activateWith(
      { NIXSHIP_TRUST_FILE: trust },
      fourth,
      "--delta-tool",
      unsigned,
    );
    expect(refused.answer, refused.log).toMatchObject({
      ok: true,
      result: "activated",
      path: fourth,
    });
    expect(refused.answer.delta?.skipped).toBe(
      `the delta tool ${unsigned} is not signed by a key this host pins: it is content-addressed, which anyone may add to the store`,
    );
    expect(refused.log).toContain(`deltas: not used: the delta tool ${unsigned} is not signed`);
    expect(requests.get("delta")).toBeUndefined();
    expect(requests.get("nar")).toBe(lacking.length);

    // The tool the cache signed, with a key the host pins, is taken.
    const fifth = await buildSystem(true);
    await push(fifth);
    const worthNext = worthIt(await publishDeltas(fourth, fifth));
    const now = await closure(fourth);
    const next = (await closure(fifth)).filter((p) => !now.includes(p));
    requests.clear();
    const taken = await activateWith({ NIXSHIP_TRUST_FILE: trust }, fifth, "--delta-tool", tool);
    expect(taken.answer, taken.log).toMatchObject({ ok: true, result: "activated", path: fifth });
    expect(taken.answer.delta, taken.log).toMatchObject({
      paths: worthNext.length,
      wholePaths: next.length - worthNext.length,
    });
    expect(requests.get("delta")).toBe(worthNext.length);

    // A zstd of nixship-activate's own closure (on the PATH its wrapper sets) is used before any
    // tool the deployer names, even one the host could not realise at all.
    const sixth = await buildSystem(true);
    await push(sixth);
    const worthSixth = worthIt(await publishDeltas(fifth, sixth));
    const then = await closure(fifth);
    const lackingSixth = (await closure(sixth)).filter((p) => !then.includes(p));
    requests.clear();
    const own = await activateWith(
      { NIXSHIP_TRUST_FILE: trust, PATH: `${unsigned}/bin` },
      sixth,
      "--delta-tool",
      unsigned.replace(/-zstd$/, "-nowhere"),
    );
    expect(own.answer, own.log).toMatchObject({ ok: true, result: "activated", path: sixth });
    expect(own.log).toContain(
      `deltas: applied with ${unsigned}/bin/zstd, of nixship-activate's closure`,
    );
    expect(own.answer.delta, own.log).toMatchObject({
      paths: worthSixth.length,
      wholePaths: lackingSixth.length - worthSixth.length,
      failed: 0,
    });
    expect(requests.get("delta")).toBe(worthSixth.length);
    await onHost(`rm -rf /nix/var/nixship-pinned`);
  });

  it("a delta's narinfo that does not parse costs its own path alone, and a delta whose copy of its target's narinfo Nix cannot read never fails the activation", async () => {
    const running = (await onHost("readlink /run/current-system")).stdout.trim() as StorePath;
    const next = await buildSystem();
    await push(next);
    const published = await publishDeltas(running, next);
    const worth = worthIt(published);
    expect(worth.length).toBeGreaterThan(2);
    // One delta's narinfo is garbage, as a bucket's writer can leave one (the cache answers it
    // as S3 does); another is a delta an older deployer signed, its copy of the target's
    // narinfo the cache's byte for byte, with an unsigned Deriver Nix cannot parse.
    const garbled = deltaOf(published, 0);
    planted.set(
      `${garbled.slice("/nix/store/".length, "/nix/store/".length + 32)}.narinfo`,
      "garbage\n",
    );
    await remakeDelta(deltaOf(published, 1), (text) => `${text}Deriver: junk\nX-Pad: 1\n`);
    try {
      const { answer, log } = await activate(next, "--delta-tool", tool);
      expect(answer, log).toMatchObject({ ok: true, result: "activated", path: next });
      expect(answer.delta, log).toMatchObject({ paths: worth.length - 1, failed: 0 });
      expect(log).toMatch(new RegExp(`deltas: ${garbled} is not asked for: error`));
    } finally {
      planted.clear();
    }

    // A delta whose copy of its target's narinfo has references Nix cannot read: the realise
    // with what the deltas rebuilt fails, and is made again with the paths whole.
    const after = await buildSystem();
    await push(after);
    const again = await publishDeltas(next, after);
    const old = await closure(next);
    const lacking = (await closure(after)).filter((p) => !old.includes(p));
    await remakeDelta(deltaOf(again, 0), (text) =>
      text.replace(/^References: .*$/m, "References: not-a-store-path"),
    );
    const { answer, log } = await activate(after, "--delta-tool", tool);
    expect(answer, log).toMatchObject({ ok: true, result: "activated", path: after });
    expect(log).toContain(
      "deltas: the realise with the paths deltas rebuilt failed (the log above says why): all of them come whole",
    );
    expect(answer.delta, log).toMatchObject({ paths: 0, wholePaths: lacking.length });
    const verified = await onHost(`nix-store --verify-path ${lacking.join(" ")}`);
    expect(verified.code, verified.stderr).toBe(0);
    expect(await leftOnHost()).toMatch(/No such file or directory\n0\n$/);
  });

  it("a realise that fails after the delta step leaves neither the delta paths nor the work directory", async () => {
    await failAfterTheStep();
  });
});

describe("activate --delta-tool on a lab host (Nix 2.26)", () => {
  beforeAll(() => startLab("--nix", "current"));
  afterAll(() => stopLab());

  it("the host runs Nix 2.26", async () => {
    expect((await onHost("nix-store --version")).stdout.trim()).toBe("nix-store (Nix) 2.26.3");
  });

  it("a host updated across a rebuild gets most paths by delta, runs the new system, and its store verifies them", async () => {
    await updateAcrossRebuild();
  });

  it("a realise that fails after the delta step leaves neither the delta paths nor the work directory", async () => {
    await failAfterTheStep();
  });
});
