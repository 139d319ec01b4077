// docs/ci.md is the contract of the commands CI runs: their JSON output and exit codes. This
// runs each command with --json in cheap settings (agent hosts over a directory store, whose
// agents never answer; an ssh host whose port refuses; the example systems built by the real
// Nix) and checks every output against the doc's tables, both ways: each documented field
// that is not optional is there with its documented type, and no field is undocumented.
// Agents that answer (for the `pruned` report, and a rollout paused after its first two waves,
// resumed and aborted by `rollout resume` and `rollout abort`) are played by the test, writing
// their status objects as agents do; a disk image for `terraform vars --image` is a stand-in
// built by Nix. `cache gc`, `cache stats` and `verify` read a directory cache of their own, one
// system pinned and one not, then with a NAR gone.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EMPTY_STATE } from "../src/agent/state.js";
import { parseRelease } from "../src/release/release-parse.js";
import { readChannel } from "../src/release/release-store.js";
import type { PruneReport } from "../src/status/prune-report.js";
import { writeHeartbeat, writeStatus } from "../src/status/status-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { type CliRun, nixship, run, runOk } from "../support/cli.js";
import {
  AWS_TERRAFORM_OUTPUT,
  awsTerraformOutput,
  type OutputHost,
} from "./support/aws-terraform-output.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";

const DOC = fileURLToPath(new URL("../docs/ci.md", import.meta.url));
const NIX_SYSTEM = `${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux`;
/** A stand-in for a NixOS amazonImage build (no nixpkgs): the disk image and image-info.json. */
const IMAGE_FLAKE = `{
  outputs = { self }: {
    packages.${NIX_SYSTEM}.image = derivation {
      name = "stand-in-amazon-image";
      system = "${NIX_SYSTEM}";
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      args = [ "-c" ''
        mkdir -p $out/nix-support
        echo disk > $out/nixos.vhd
        echo '{"boot_mode":"uefi","system":"${NIX_SYSTEM}","file":"'$out'/nixos.vhd"}' > $out/nix-support/image-info.json
      '' ];
    };
  };
}
`;

// --- docs/ci.md, read as data ------------------------------------------------------------

interface FieldRow {
  /** `hosts[].current` → ["hosts", "[]", "current"]; `hosts.*` → ["hosts", "*"]. */
  readonly path: readonly string[];
  readonly optional: boolean;
  /** JSON type names, or literals (JSON text: `"switch"`, `1`). */
  readonly alternatives: readonly string[];
}

interface Section {
  readonly exitCodes: readonly number[];
  readonly fieldTables: readonly (readonly FieldRow[])[];
  /** The deploy section's events: type → field names. */
  readonly events: ReadonlyMap<string, readonly string[]>;
}

function parseDoc(text: string): Map<string, Section> {
  const sections = new Map<string, Section>();
  for (const chunk of text.split(/^## /m).slice(1)) {
    const title = (chunk.split("\n")[0] as string).trim();
    const exitLine = /\*\*Exit codes:\*\*([\s\S]*?)(\n\n|$)/.exec(chunk)?.[1] ?? "";
    const exitCodes = [...exitLine.matchAll(/`(\d+)`/g)].map((m) => Number(m[1]));
    const tables = chunk.split(/\n(?=\| field \| type \| meaning \|)/).slice(1);
    const fieldTables = tables.map((table) =>
      tableRows(table).map(([field, type]) => parseFieldRow(field as string, type as string)),
    );
    const events = new Map<string, string[]>();
    const eventTable = /\n(\| event \| fields \|[\s\S]*?)(\n\n|$)/.exec(chunk)?.[1];
    for (const [event, fields] of eventTable ? tableRows(eventTable) : []) {
      // `name?` (...): a field the event carries only sometimes.
      const names = [...(fields as string).matchAll(/`([A-Za-z]+\??)` \(/g)].map(
        (m) => m[1] as string,
      );
      events.set(unquote(event as string), names);
    }
    sections.set(title, { exitCodes, fieldTables, events });
  }
  return sections;
}

/** The cells of a markdown table's body rows (header and rule skipped; stops at a blank line). */
function tableRows(table: string): string[][] {
  const lines = table.split("\n");
  const rows: string[][] = [];
  for (const line of lines.slice(2)) {
    if (!line.startsWith("|")) break;
    rows.push(line.split(" | ").map((cell) => cell.replace(/^\| ?| ?\|$/g, "").trim()));
  }
  return rows;
}

function unquote(cell: string): string {
  const m = /^`([^`]+)`$/.exec(cell);
  if (!m) throw new Error(`docs/ci.md: expected a \`name\` cell, got ${cell}`);
  return m[1] as string;
}

function parseFieldRow(field: string, type: string): FieldRow {
  const name = unquote(field);
  const optional = name.endsWith("?");
  const path = name
    .replace(/\?$/, "")
    .split(".")
    .flatMap((segment) => (segment.endsWith("[]") ? [segment.slice(0, -2), "[]"] : [segment]));
  return { path, optional, alternatives: type.split(" or ").map((t) => t.trim()) };
}

// --- checking a value against a table ----------------------------------------------------

const TYPE_CHECKS: Record<string, (v: unknown) => boolean> = {
  string: (v) => typeof v === "string",
  number: (v) => typeof v === "number",
  integer: (v) => Number.isInteger(v),
  boolean: (v) => typeof v === "boolean",
  null: (v) => v === null,
  object: (v) => typeof v === "object" && v !== null && !Array.isArray(v),
  array: Array.isArray,
};

function matchesType(alternatives: readonly string[], value: unknown): boolean {
  return alternatives.some((alt) => {
    const check = TYPE_CHECKS[alt];
    if (check) return check(value);
    if (/^(".*"|-?\d+)$/.test(alt)) return JSON.stringify(value) === alt;
    throw new Error(`docs/ci.md: unknown type ${alt}`);
  });
}

/** Every node at `path` (iterating `[]` elements and `*` map values), with its location. */
function nodesAt(value: unknown, path: readonly string[], at = "$"): [unknown, string][] {
  if (path.length === 0) return [[value, at]];
  const [head, ...rest] = path as [string, ...string[]];
  if (head === "[]") {
    return Array.isArray(value) ? value.flatMap((v, i) => nodesAt(v, rest, `${at}[${i}]`)) : [];
  }
  if (!TYPE_CHECKS.object?.(value)) return [];
  const obj = value as Record<string, unknown>;
  if (head === "*") return Object.entries(obj).flatMap(([k, v]) => nodesAt(v, rest, `${at}.${k}`));
  return head in obj ? nodesAt(obj[head], rest, `${at}.${head}`) : [];
}

/** Where `value` departs from the table: missing or mistyped fields, undocumented ones. */
function tableProblems(rows: readonly FieldRow[], value: unknown): string[] {
  const problems: string[] = [];
  for (const row of rows) {
    const parent = row.path.slice(0, -1);
    const key = row.path.at(-1) as string;
    for (const [node, at] of nodesAt(value, parent)) {
      const children = key === "*" || key === "[]" ? nodesAt(node, [key], at) : [];
      if (key !== "*" && key !== "[]") {
        // Not an object (e.g. an `object or null` that is null): its fields are not there.
        if (!TYPE_CHECKS.object?.(node)) continue;
        const obj = node as Record<string, unknown>;
        if (!(key in obj)) {
          if (!row.optional) problems.push(`${at}.${key}: missing`);
          continue;
        }
        children.push([obj[key], `${at}.${key}`]);
      }
      for (const [child, where] of children) {
        if (!matchesType(row.alternatives, child)) {
          problems.push(
            `${where}: ${JSON.stringify(child)} is not ${row.alternatives.join(" or ")}`,
          );
        }
      }
    }
  }
  // Every object the table describes the fields of holds no other field; one the table allows
  // to be null may be null.
  const nullable = new Set(
    rows.filter((r) => r.alternatives.includes("null")).map((r) => JSON.stringify(r.path)),
  );
  const described = new Map<string, Set<string>>();
  for (const row of rows) {
    const key = row.path.at(-1) as string;
    if (key === "*" || key === "[]") continue;
    const parent = JSON.stringify(row.path.slice(0, -1));
    described.set(parent, (described.get(parent) ?? new Set()).add(key));
  }
  for (const [parent, keys] of described) {
    for (const [node, at] of nodesAt(value, JSON.parse(parent) as string[])) {
      if (node === null && nullable.has(parent)) continue;
      if (!TYPE_CHECKS.object?.(node)) {
        problems.push(`${at}: expected an object`);
        continue;
      }
      for (const k of Object.keys(node as object)) {
        if (!keys.has(k)) problems.push(`${at}.${k}: not in docs/ci.md`);
      }
    }
  }
  return problems;
}

// --- the runs ----------------------------------------------------------------------------

let work: string;
let doc: Map<string, Section>;
let cacheKey: string;
let releaseKey: string;
let agentFleet: string;
let sshFleet: string;
let storeDir: string;
/** The agent hosts' systems (host → store path), from the build test's `build --json`. */
let agentSystems: Record<string, string> | undefined;

/** The agent hosts' systems, built (again, when the build test did not run) by `build`. */
async function builtAgentSystems(): Promise<Record<string, string>> {
  if (agentSystems === undefined) {
    const built = await json(["build", "--fleet", agentFleet, "--json"]);
    agentSystems = (built.value as { hosts: Record<string, string> }).hosts;
  }
  return agentSystems;
}

function section(title: string): Section {
  const found = doc.get(title);
  if (!found) throw new Error(`docs/ci.md has no section "## ${title}"`);
  return found;
}

/** Checks a run's exit code against the section and its JSON against the section's table. */
function expectDocumented(title: string, r: CliRun, value: unknown, table = 0): void {
  const s = section(title);
  expect(s.exitCodes, `${title}: documented exit codes`).toContain(r.code);
  const rows = s.fieldTables[table];
  if (!rows) throw new Error(`docs/ci.md: "${title}" has no field table ${table}`);
  expect(tableProblems(rows, value), `${title}: ${JSON.stringify(value)}`).toEqual([]);
}

/** A failed run under --json: its last stdout line is the documented error object. */
function expectDocumentedError(title: string, r: CliRun, code: 1 | 2): void {
  expect(r.code, r.stderr).toBe(code);
  expect(section(title).exitCodes).toContain(code);
  const last = JSON.parse(r.stdout.trim().split("\n").at(-1) as string);
  expect(tableProblems(section("Conventions").fieldTables[0] as FieldRow[], last)).toEqual([]);
  expect(r.stderr).toContain(`error: ${last.error.message}`);
}

async function json(args: readonly string[]): Promise<{ r: CliRun; value: unknown }> {
  const r = await nixship(args);
  if (r.stdout.trim() === "") throw new Error(`nixship ${args.join(" ")}: no output\n${r.stderr}`);
  return { r, value: JSON.parse(r.stdout) };
}

beforeAll(async () => {
  doc = parseDoc(await readFile(DOC, "utf8"));
  work = await mkdtemp(join(tmpdir(), "nixship-ci-docs-"));
  await run("ln", ["-s", EXAMPLES_DIR, join(work, "examples")]);
  cacheKey = join(work, "cache.sec");
  releaseKey = join(work, "release.sec");
  const cachePub = (await nixship(["key", "generate", "--name", "ci-cache-1", "--out", cacheKey]))
    .stdout;
  const releasePub = (
    await nixship(["key", "generate", "--name", "ci-release-1", "--out", releaseKey])
  ).stdout;
  storeDir = join(work, "store");
  // A deploy never makes a cache: the store starts as one, as `cache init` leaves it.
  expect((await nixship(["cache", "init", `file://${storeDir}`])).code).toBe(0);
  agentFleet = join(work, "agents.json");
  await writeFile(
    agentFleet,
    JSON.stringify({
      cache: { url: `file://${storeDir}?fsync=false`, publicKeys: [cachePub.trim()] },
      // Long enough for one `waiting` event (every 5 s) before the canary times out.
      releases: { channel: "production", publicKeys: [releasePub.trim()], offlineTimeout: 6 },
      policy: { canary: 1 },
      hosts: {
        ag1: { tags: ["web"], delivery: "agent", system: "path:./examples#web-v1" },
        ag2: { tags: ["web"], delivery: "agent", system: "path:./examples#web-v2" },
      },
    }),
  );
  // An ssh host whose port refuses at once: unreachable, cheaply.
  await writeFile(join(work, "ssh_config"), "Host dead\n  HostName 127.0.0.1\n  Port 1\n");
  await writeFile(join(work, "known_hosts"), "");
  sshFleet = join(work, "ssh.json");
  await writeFile(
    sshFleet,
    JSON.stringify({
      ssh: { configFile: "./ssh_config", knownHosts: "./known_hosts" },
      hosts: { dead: { sshHost: "dead", address: "127.0.0.1", system: "path:./examples#web-v1" } },
    }),
  );
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("docs/ci.md", () => {
  it("has a section, with exit codes and a table, for every command CI runs or tends the fleet with", () => {
    for (const title of [
      "`nixship build --json`",
      "`nixship push --json`",
      "`nixship plan --json`",
      "`nixship deploy --json`",
      "`nixship release publish --json`",
      "`nixship status --json`",
      "`nixship rollback --json`",
      "`nixship rollback --on SELECTOR --json`",
      "`nixship terraform vars`",
      "`nixship fleet from-terraform`",
      "`nixship verify --json`",
      "`nixship cache stats --json`",
      "`nixship cache gc --json`",
      "`nixship rollout resume ID --json` and `nixship rollout abort ID --json`",
      "`nixship release list --json`",
      "`nixship release show --json`",
      "`nixship secrets list --json`",
      "`nixship secrets set --json`, `nixship secrets edit --json` and `nixship secrets rekey --json`",
      "`nixship doctor --json`",
    ]) {
      const s = section(title);
      expect(s.exitCodes, title).toContain(0);
      expect(s.exitCodes, title).toContain(2);
      expect(s.fieldTables.length, title).toBeGreaterThan(0);
    }
    // The checker itself catches a missing, a mistyped and an undocumented field.
    const rows = section("`nixship build --json`").fieldTables[0] as FieldRow[];
    expect(tableProblems(rows, { systems: [{ spec: "x", path: 1, hosts: [], more: 0 }] })).toEqual([
      "$.systems[0].path: 1 is not string",
      "$.hosts: missing",
      "$.systems[0].more: not in docs/ci.md",
    ]);
    // An `object or null` may be null; when it is an object, its fields are checked.
    const report = section("`nixship fleet from-terraform`").fieldTables[1] as FieldRow[];
    const done = {
      out: null,
      via: "ssm",
      hosts: 0,
      notInTerraform: [],
      dropped: [],
      knownHosts: null,
    };
    expect(tableProblems(report, done)).toEqual([]);
    expect(tableProblems(report, { ...done, knownHosts: { file: "k", written: true } })).toEqual([
      "$.knownHosts.hosts: missing",
      "$.knownHosts.pending: missing",
    ]);
  });

  it("build: systems and hosts; a bad selector and a missing output exit 2, as JSON errors", async () => {
    const { r, value } = await json(["build", "--fleet", agentFleet, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expectDocumented("`nixship build --json`", r, value);
    agentSystems = (value as { hosts: Record<string, string> }).hosts;
    expectDocumentedError(
      "`nixship build --json`",
      await nixship(["build", "--fleet", agentFleet, "--on", "@nope", "--json"]),
      2,
    );
    const broken = join(work, "broken.json");
    await writeFile(
      broken,
      JSON.stringify({ hosts: { a: { address: "192.0.2.1", system: "path:./examples#nope" } } }),
    );
    const missing = await nixship(["build", "--fleet", broken, "--json"]);
    expectDocumentedError("`nixship build --json`", missing, 2);
    expect(JSON.parse(missing.stdout).error.code).toBe("flake-output-missing");
  });

  it("push", async () => {
    const built = await json(["build", "--fleet", agentFleet, "--on", "ag1", "--json"]);
    const path = (built.value as { hosts: Record<string, string> }).hosts.ag1 as string;
    const pushArgs = ["push", path, "--to", `file://${work}/pushed`, "--key", cacheKey, "--json"];
    const { r, value } = await json(pushArgs);
    expect(r.code, r.stderr).toBe(0);
    expectDocumented("`nixship push --json`", r, value);
    expectDocumentedError(
      "`nixship push --json`",
      await nixship([...pushArgs, "--compression", "lz4"]),
      2,
    );
  });

  it("plan: agent hosts, and an unreachable ssh host", async () => {
    for (const fleet of [agentFleet, sshFleet]) {
      const { r, value } = await json(["plan", "--fleet", fleet, "--json"]);
      expect(r.code, r.stderr).toBe(0);
      expectDocumented("`nixship plan --json`", r, value);
    }
  });

  const DEPLOY = "`nixship deploy --json`";
  const deployArgs = () => ["deploy", "--key", cacheKey, "--release-key", releaseKey, "--json"];

  /** Checks a deploy's exit code and every event it printed; adds their types to `seen`. */
  function checkDeploy(r: CliRun, code: number, seen = new Set<string>()): void {
    const events = section(DEPLOY).events;
    const results = section(DEPLOY).fieldTables[0] as FieldRow[];
    expect(r.code, r.stderr).toBe(code);
    expect(section(DEPLOY).exitCodes).toContain(code);
    for (const line of r.stdout.trim().split("\n")) {
      const event = JSON.parse(line) as Record<string, unknown>;
      const type = event.type as string;
      seen.add(type);
      // An abort's rollback plan: the first line of `rollback --json`, checked by its table.
      if (type === "undo-plan") {
        expect(events.has(type), "event undo-plan is documented").toBe(true);
        const undo = section("`nixship rollback --json`").fieldTables[0] as FieldRow[];
        expect(tableProblems(undo, event)).toEqual([]);
        continue;
      }
      const fields = events.get(type);
      expect(fields, `event ${type} is documented`).toBeDefined();
      const always = (fields ?? []).filter((f) => !f.endsWith("?"));
      const sometimes = (fields ?? []).filter((f) => f.endsWith("?")).map((f) => f.slice(0, -1));
      const carried = Object.keys(event).filter((k) => !sometimes.includes(k));
      expect(carried.sort()).toEqual(["time", "type", ...always].sort());
      if (type === "host-done") expect(tableProblems(results, event.result)).toEqual([]);
      if (type === "summary") {
        for (const result of event.results as unknown[]) {
          expect(tableProblems(results, result)).toEqual([]);
        }
      }
      if (type === "plan") {
        const planRows = section("`nixship plan --json`").fieldTables[0] as FieldRow[];
        expect(tableProblems(planRows, event.plan)).toEqual([]);
      }
    }
  }

  it("deploy: every event and host result, watched, --async and unreachable (waited for)", async () => {
    const title = DEPLOY;
    const base = deployArgs();
    const seen = new Set<string>();
    const check = (r: CliRun, code: number) => checkDeploy(r, code, seen);
    // The agents never answer: the canary times out, the rollout stops.
    check(await nixship([...base, "--fleet", agentFleet]), 1);
    check(await nixship([...base, "--fleet", agentFleet, "--async"]), 0);
    check(await nixship([...base, "--fleet", sshFleet]), 1);
    const skipped = await nixship([
      ...base,
      "--fleet",
      sshFleet,
      "--skip-unreachable",
      "--wait-reachable",
      "1",
    ]);
    check(skipped, 0);
    const summary = JSON.parse(skipped.stdout.trim().split("\n").at(-1) as string);
    expect(summary.results[0].outcome).toMatchObject({ status: "skipped", reason: "unreachable" });
    // build-progress comes only when Nix builds something (the systems may be in the store
    // already); each one that came was checked against the table above.
    seen.delete("build-progress");
    expect([...seen].sort()).toEqual(
      [
        "build-start",
        "build-done",
        "push-start",
        "push-done",
        "awaiting",
        "plan",
        "wave-start",
        "host-phase",
        "waiting",
        "host-done",
        "stopped",
        "summary",
        "released",
      ].sort(),
    );
    expectDocumentedError(
      title,
      await nixship([...base, "--fleet", agentFleet, "--parallel", "0"]),
      2,
    );
  });

  it("deploy: activated hosts' pruning reports, done and failed (--keep-generations)", async () => {
    // Agents of their own store and channel, played by the test: each answers every release
    // that names it with a success record carrying its pruning report, as agents write it.
    const dir = join(work, "prune-store");
    expect((await nixship(["cache", "init", `file://${dir}`])).code).toBe(0);
    const fleet = join(work, "prune.json");
    const doc = JSON.parse(await readFile(agentFleet, "utf8"));
    await writeFile(
      fleet,
      JSON.stringify({
        ...doc,
        cache: { ...doc.cache, url: `file://${dir}?fsync=false` },
        releases: { ...doc.releases, channel: "prune", offlineTimeout: 60 },
        hosts: {
          pr1: { delivery: "agent", system: "path:./examples#web-v1" },
          pr2: { delivery: "agent", system: "path:./examples#web-v2" },
        },
      }),
    );
    const reports: Record<string, PruneReport> = {
      pr1: { ok: true, kept: [3, 4], removed: [1, 2], gc: "done", deletedPaths: 12, freedMiB: 3.5 },
      pr2: { ok: false, message: "nix-collect-garbage exited 1" },
    };
    const stop = new AbortController();
    const agents = playAgents(dir, "prune", reports, stop.signal);
    const r = await nixship([...deployArgs(), "--fleet", fleet, "--keep-generations", "2"]);
    stop.abort();
    await agents;
    checkDeploy(r, 0);
    const summary = JSON.parse(r.stdout.trim().split("\n").at(-1) as string);
    expect(
      Object.fromEntries(
        (summary.results as { host: string; outcome: { status: string; pruned: unknown } }[]).map(
          (h) => [h.host, [h.outcome.status, h.outcome.pruned]],
        ),
      ),
    ).toEqual({ pr1: ["activated", reports.pr1], pr2: ["activated", reports.pr2] });
  });

  it("release publish, then status and rollback of agent hosts and of an unreachable ssh host", async () => {
    const publishArgs = ["release", "publish", "--fleet", agentFleet, "--key", cacheKey];
    const published = await json([...publishArgs, "--release-key", releaseKey, "--json"]);
    expect(published.r.code, published.r.stderr).toBe(0);
    expect(published.value).toMatchObject({ channel: "production", seq: expect.any(Number) });
    expectDocumented("`nixship release publish --json`", published.r, published.value);
    expectDocumentedError(
      "`nixship release publish --json`",
      await nixship([...publishArgs, "--json"], { env: { NIXSHIP_RELEASE_KEY: "" } }),
      2,
    );

    const status = "`nixship status --json`";
    const never = await json(["status", "--fleet", agentFleet, "--json"]);
    expect(never.r.code).toBe(1);
    expectDocumented(status, never.r, never.value);
    // Both agents report that they run their systems.
    const built = await json(["build", "--fleet", agentFleet, "--json"]);
    const store = new FsStore(storeDir, { fsync: false });
    for (const [host, path] of Object.entries(
      (built.value as { hosts: Record<string, string> }).hosts,
    )) {
      await writeStatus(store, {
        version: 1,
        host,
        mode: "agent",
        channel: "production",
        seq: (published.value as { seq: number }).seq,
        desired: path,
        current: path,
        generation: 2,
        state: "success",
        phase: null,
        error: null,
        rolledBack: null,
        startedAt: new Date().toISOString(),
        updatedAt: new Date().toISOString(),
      });
      // And that their agents live.
      await writeHeartbeat(store, {
        host,
        channel: "production",
        state: "running",
        every: 300,
        lastSeq: (published.value as { seq: number }).seq,
        at: new Date().toISOString(),
      });
    }
    await store.close();
    const reported = await json(["status", "--fleet", agentFleet, "--json"]);
    expect(reported.r.code, reported.r.stderr).toBe(0);
    expect((reported.value as { hosts: { reported: boolean }[] }).hosts[0]?.reported).toBe(true);
    expectDocumented(status, reported.r, reported.value);
    const live = await json(["status", "--fleet", sshFleet, "--json"]);
    expect(live.r.code).toBe(1);
    expectDocumented(status, live.r, live.value);

    // Every host runs its system now: the channel is explicit, so a release names them again.
    const again = await json([...publishArgs, "--release-key", releaseKey, "--json"]);
    expect(again.value).toEqual({
      channel: "production",
      seq: (published.value as { seq: number }).seq + 1,
      digest: expect.stringMatching(/^sha256-/),
    });
    expectDocumented("`nixship release publish --json`", again.r, again.value);

    const rollback = "`nixship rollback --on SELECTOR --json`";
    for (const fleet of [agentFleet, sshFleet]) {
      const rolled = await json(["rollback", "--fleet", fleet, "--on", "*", "--json"]);
      expect(rolled.r.code).toBe(1);
      expectDocumented(rollback, rolled.r, rolled.value);
    }
    expectDocumentedError(
      rollback,
      await nixship(["rollback", "--fleet", sshFleet, "--on", "*", "--to", "release:1", "--json"]),
      2,
    );
  });

  it("agent status, pause and resume on a host's config", async () => {
    const config = join(work, "agent.json");
    await writeFile(
      config,
      JSON.stringify({
        store: `file://${join(work, "agent-store")}`,
        channel: "prod",
        releaseKeys: ["release-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I="],
        cacheKeys: ["cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I="],
        stateDir: join(work, "agent-state"),
      }),
    );
    const title =
      "`nixship agent status --json`, `nixship agent pause --json` and `nixship agent resume --json`";
    for (const [verb, changed] of [
      ["pause", true],
      ["pause", false],
      ["resume", true],
      ["resume", false],
    ] as const) {
      const { r, value } = await json(["agent", verb, "--config", config, "--json"]);
      expect(value).toMatchObject({ paused: verb === "pause", changed });
      expectDocumented(title, r, value, 1);
    }
    const { r, value } = await json(["agent", "status", "--config", config, "--json"]);
    expect(value).toMatchObject({ channel: "prod", paused: false, lastSeq: null });
    expectDocumented(title, r, value, 0);
    // A boot undone, its reboot back awaited: the field is documented, and said in the text.
    // Undone a moment ago, within its reboot timeout.
    const since = new Date().toISOString();
    const rebootingBack = { bootId: "b1", since, timeout: 600 };
    await writeFile(
      join(work, "agent-state", "state.json"),
      JSON.stringify({ ...EMPTY_STATE, lastSeq: 4, lastResult: "failed", rebootingBack }),
    );
    const back = await json(["agent", "status", "--config", config, "--json"]);
    expect(back.value).toMatchObject({ rebootingBack });
    expectDocumented(title, back.r, back.value, 0);
    const text = await nixship(["agent", "status", "--config", config]);
    expect(text.stdout).toContain(
      `rebooting back into the previous generation since ${since} (releases wait for that boot, 600s at most)`,
    );
  });

  it("terraform vars, in both formats", async () => {
    const title = "`nixship terraform vars`";
    const tfvars = await json(["terraform", "vars", "--fleet", agentFleet]);
    expect(tfvars.r.code, tfvars.r.stderr).toBe(0);
    expectDocumented(title, tfvars.r, tfvars.value, 0);
    const external = await json([
      "terraform",
      "vars",
      "--fleet",
      agentFleet,
      "--format",
      "external",
    ]);
    expectDocumented(title, external.r, external.value, 1);
    const bad = await nixship(["terraform", "vars", "--fleet", agentFleet, "--format", "x"]);
    expect(bad.code).toBe(2);
    expect(section(title).exitCodes).toContain(bad.code);

    await mkdir(join(work, "image"));
    await writeFile(join(work, "image", "flake.nix"), IMAGE_FLAKE);
    const image = ["--on", "ag1", "--image", "path:./image#image"];
    const withImage = await json(["terraform", "vars", "--fleet", agentFleet, ...image]);
    expect(withImage.r.code, withImage.r.stderr).toBe(0);
    expect(withImage.value).toMatchObject({ image_format: "VHD", image_boot_mode: "uefi" });
    expectDocumented(title, withImage.r, withImage.value, 0);
    const externalImage = await json([
      ...["terraform", "vars", "--fleet", agentFleet, ...image, "--format", "external"],
    ]);
    expect(externalImage.value).toHaveProperty("image_path");
    expectDocumented(title, externalImage.r, externalImage.value, 1);
    const notImage = ["--on", "ag1", "--image", "path:./examples#web-v1"];
    const refused = await nixship(["terraform", "vars", "--fleet", agentFleet, ...notImage]);
    expect(refused.code).toBe(2);
    expect(section(title).exitCodes).toContain(refused.code);
    expect(refused.stderr).toContain("no nix-support/image-info.json");
  });

  it("fleet from-terraform", async () => {
    const title = "`nixship fleet from-terraform`";
    const outputs = join(work, "tf.json");
    await writeFile(outputs, JSON.stringify(AWS_TERRAFORM_OUTPUT));
    const cachePub = (await nixship(["key", "public", cacheKey])).stdout.trim();
    const args = ["fleet", "from-terraform", outputs, "--cache-key", cachePub];
    const made = await json([...args, "--system", ".#{name}"]);
    expect(made.r.code, made.r.stderr).toBe(0);
    expectDocumented(title, made.r, made.value);
    await mkdir(join(work, "tf-bad"));
    const bad = join(work, "tf-bad", "outputs.json");
    await writeFile(bad, "{}");
    const refused = await nixship([
      "fleet",
      "from-terraform",
      bad,
      "--system",
      ".#{name}",
      "--cache-key",
      cachePub,
    ]);
    expect(refused.code).toBe(2);
    expect(section(title).exitCodes).toContain(refused.code);
  });

  it("fleet from-terraform --json: ssm hosts with Terraform's host keys; ssh hosts' known_hosts, a pending host, a changed key", async () => {
    const title = "`nixship fleet from-terraform`";
    const cachePub = (await nixship(["key", "public", cacheKey])).stdout.trim();
    const sshKey = async (name: string) => {
      await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(work, name)]);
      return (await readFile(join(work, `${name}.pub`), "utf8")).split(" ").slice(0, 2).join(" ");
    };
    const [key1, key2] = [await sshKey("web1-key"), await sshKey("web1-key-2")];
    // One instance a host (the fleet refuses two hosts on one).
    const host = (ip: string, key: string): OutputHost => ({
      instance_id: `i-0123456789abcdef${ip.slice(-1)}`,
      private_ip: ip,
      public_ip: "",
      ssh_host_public_key: key,
      tags: { Role: "web" },
    });
    // web2 has no key from Terraform and has published none to the store: pending.
    const outputs = async (web1Key: string) => {
      const file = join(work, "tf-keys.json");
      const hosts = { web1: host("10.42.1.11", web1Key), web2: host("10.42.1.12", "") };
      await writeFile(file, JSON.stringify(awsTerraformOutput(`file://${storeDir}`, hosts)));
      return file;
    };
    const args = async (web1Key: string) => [
      ...["fleet", "from-terraform", await outputs(web1Key), "--system", ".#{name}"],
      ...["--cache-key", cachePub, "--json"],
    ];

    const ssm = await json(await args(key1));
    expect(ssm.r.code, ssm.r.stderr).toBe(0);
    expectDocumented(title, ssm.r, ssm.value, 1);
    const made = ssm.value as { out: null; knownHosts: null; fleet: Record<string, unknown> };
    expect([made.out, made.knownHosts]).toEqual([null, null]);
    expect(made.fleet.hosts).toMatchObject({ web1: { hostKey: key1 } });
    expect(tableProblems(section(title).fieldTables[0] as FieldRow[], made.fleet)).toEqual([]);

    const out = join(work, "tf-ssh", "nixship.json");
    await mkdir(join(work, "tf-ssh"));
    const knownHosts = join(work, "tf-ssh", "known_hosts");
    const ssh = ["--via", "ssh", "--known-hosts", knownHosts, "--out", out];
    const merged = await json([...(await args(key1)), ...ssh]);
    expect(merged.r.code, merged.r.stderr).toBe(0);
    expectDocumented(title, merged.r, merged.value, 1);
    expect(merged.value).toMatchObject({
      out,
      via: "ssh",
      hosts: 2,
      knownHosts: {
        written: true,
        hosts: [{ host: "web1", names: ["10.42.1.11"], change: "added" }],
        pending: [{ host: "web2" }],
      },
    });
    expect(merged.value).not.toHaveProperty("fleet");
    const changed = await nixship([...(await args(key2)), ...ssh]);
    expectDocumentedError(title, changed, 1);
    expect(JSON.parse(changed.stdout).error.code).toBe("host-key-changed");
  });

  it("cache gc (dry run and collection), cache stats and verify of a directory cache", async () => {
    const gc = "`nixship cache gc --json`";
    const stats = "`nixship cache stats --json`";
    const verify = "`nixship verify --json`";
    const dir = join(work, "gc-cache");
    const url = `file://${dir}`;
    expect((await nixship(["cache", "init", url])).code).toBe(0);
    const { ag1, ag2 } = await builtAgentSystems();
    const pushed = await nixship([
      ...["push", ag1 as string, ag2 as string, "--to", url, "--key", cacheKey],
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    // ag1's system is pinned; what only ag2's system holds goes.
    const pin = ["cache", "pin", ag1 as string, "--name", "ci", "--cache", url];
    expect((await nixship(pin)).code).toBe(0);
    const args = ["cache", "gc", "--cache", url, "--grace", "0", "--json"];
    const dry = await json([...args, "--dry-run"]);
    expect(dry.r.code, dry.r.stderr).toBe(0);
    expect(dry.value).toMatchObject({
      dryRun: true,
      reportKey: null,
      deletedPaths: expect.arrayContaining([expect.objectContaining({ storePath: ag2 })]),
      whyDeleted: expect.arrayContaining([
        { storePath: ag2, why: expect.objectContaining({ kind: "unreferenced" }) },
      ]),
      keptRoots: [{ path: ag1, sources: ["pin"], by: ["pin ci"] }],
    });
    expectDocumented(gc, dry.r, dry.value);
    const collected = await json(args);
    expect(collected.r.code, collected.r.stderr).toBe(0);
    expect(collected.value).toMatchObject({ dryRun: false, reportKey: expect.any(String) });
    expect(collected.value).not.toHaveProperty("whyDeleted");
    expectDocumented(gc, collected.r, collected.value);
    expectDocumentedError(gc, await nixship([...args, "--grace", "soon"]), 2);

    const cachePub = (await nixship(["key", "public", cacheKey])).stdout.trim();
    const counted = await json([
      "cache",
      "stats",
      "--cache",
      url,
      "--trusted-key",
      cachePub,
      "--json",
    ]);
    expect(counted.r.code, counted.r.stderr).toBe(0);
    expect(counted.value).toMatchObject({ paths: 4, untrusted: [] });
    expectDocumented(stats, counted.r, counted.value);
    const verified = await json(["verify", "--cache", url, "--trusted-key", cachePub, "--json"]);
    expect(verified.r.code, verified.r.stderr).toBe(0);
    expect(verified.value).toMatchObject({ checked: 4, ok: 4, problems: [] });
    expectDocumented(verify, verified.r, verified.value);
    // A NAR goes missing: verify names the path, stats the narinfo that names no NAR.
    const nar = (await readdir(join(dir, "nar")))[0] as string;
    await rm(join(dir, "nar", nar));
    const broken = await json(["verify", "--cache", url, "--trusted-key", cachePub, "--json"]);
    expect(broken.r.code).toBe(1);
    expect(broken.value).toMatchObject({ ok: 3, problems: [{ kind: "nar-missing" }] });
    expectDocumented(verify, broken.r, broken.value);
    expectDocumentedError(verify, await nixship(["verify", "--cache", url, "--json"]), 2);
    const orphaned = await json(["cache", "stats", "--cache", url, "--json"]);
    expect(orphaned.value).toMatchObject({ orphans: { narinfos: [expect.any(String)] } });
    expect(orphaned.value).not.toHaveProperty("untrusted");
    expectDocumented(stats, orphaned.r, orphaned.value);
    expectDocumentedError(
      stats,
      await nixship(["cache", "stats", "--cache", url, "--top", "x", "--json"]),
      2,
    );
  });

  it("release list and release show of the agent hosts' channel", async () => {
    const list = "`nixship release list --json`";
    const show = "`nixship release show --json`";
    // The releases the tests above published to the agent hosts' store.
    const listed = await json(["release", "list", "--fleet", agentFleet, "--json"]);
    expect(listed.r.code, listed.r.stderr).toBe(0);
    const releases = (listed.value as { releases: { seq: number; current: boolean }[] }).releases;
    expect(releases.length).toBeGreaterThan(1);
    expect(releases.filter((r) => r.current)).toHaveLength(1);
    expectDocumented(list, listed.r, listed.value);
    expectDocumentedError(
      list,
      await nixship(["release", "list", "--store", `file://${storeDir}`, "--json"]),
      2,
    );
    const latest = await json(["release", "show", "--fleet", agentFleet, "--json"]);
    expect(latest.r.code, latest.r.stderr).toBe(0);
    expect(latest.value).toMatchObject({
      current: true,
      signature: { key: "ci-release-1", verified: true },
      origin: { status: "trusted" },
    });
    expectDocumented(show, latest.r, latest.value);
    // The first release, unverified (no keys: the store alone).
    const first = await json([
      ...["release", "show", "1", "--store", `file://${storeDir}`, "--channel", "production"],
      "--json",
    ]);
    expect(first.r.code, first.r.stderr).toBe(0);
    expect(first.value).toMatchObject({ current: false, signature: { verified: false } });
    expectDocumented(show, first.r, first.value);
    expectDocumentedError(
      show,
      await nixship(["release", "show", "999", "--fleet", agentFleet, "--json"]),
      1,
    );
  });

  it("rollout resume and rollout abort: a rollout paused after each of its first two waves", async () => {
    const title = "`nixship rollout resume ID --json` and `nixship rollout abort ID --json`";
    // Agents of their own store and channel, played by the test (as for the pruning reports).
    const dir = join(work, "pause-store");
    expect((await nixship(["cache", "init", `file://${dir}`])).code).toBe(0);
    const fleet = join(work, "pause.json");
    const doc = JSON.parse(await readFile(agentFleet, "utf8"));
    const system = "path:./examples#web-v1";
    await writeFile(
      fleet,
      JSON.stringify({
        ...doc,
        cache: { ...doc.cache, url: `file://${dir}?fsync=false` },
        releases: { ...doc.releases, channel: "pause", offlineTimeout: 60 },
        policy: { canary: 1, parallel: 1, pauseAfter: [1, 2], pauseTimeout: 600 },
        hosts: {
          pa1: { delivery: "agent", system },
          pa2: { delivery: "agent", system },
          pa3: { delivery: "agent", system },
        },
      }),
    );
    const stop = new AbortController();
    const agents = playAgents(dir, "pause", { pa1: null, pa2: null, pa3: null }, stop.signal);
    // Resume the first pause, abort the second, each from another process, with --json.
    const answers: Promise<CliRun>[] = [];
    let pending = "";
    const r = await nixship([...deployArgs(), "--fleet", fleet], {
      onStdout: (chunk) => {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          const event = JSON.parse(line) as { type: string; rollout?: string };
          if (event.type !== "paused") continue;
          const action = answers.length === 0 ? "resume" : "abort";
          answers.push(
            nixship(["rollout", action, event.rollout as string, "--fleet", fleet, "--json"]),
          );
        }
      },
    });
    const answered = await Promise.all(answers);
    stop.abort();
    await agents;
    // The abort stops the rollout before its third wave (the deploy then undoes the first two).
    const seen = new Set<string>();
    checkDeploy(r, 1, seen);
    expect([...seen]).toEqual(expect.arrayContaining(["paused", "pause-ended", "undo-plan"]));
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.find((e) => e.type === "stopped")?.notStarted).toEqual(["pa3"]);
    expect(answered).toHaveLength(2);
    for (const a of answered) {
      expect(a.code, a.stderr).toBe(0);
      expectDocumented(title, a, JSON.parse(a.stdout));
    }
    expect(answered.map((a) => JSON.parse(a.stdout))).toMatchObject([
      { action: "resume", afterWave: 1, taken: true },
      { action: "abort", afterWave: 2, taken: true },
    ]);
    const id = (JSON.parse(answered[0]?.stdout as string) as { rollout: string }).rollout;
    // Its end got there first: an outcome, not a misuse.
    expectDocumentedError(
      title,
      await nixship(["rollout", "resume", id, "--fleet", fleet, "--json"]),
      1,
    );
    expectDocumentedError(
      title,
      await nixship(["rollout", "resume", "000000000000", "--fleet", fleet, "--json"]),
      2,
    );
  });

  it("doctor: a fleet of agent hosts with its keys, and one of an ssh host that does not answer", async () => {
    const title = "`nixship doctor --json`";
    const agents = await json([
      ...["doctor", "--fleet", agentFleet, "--key", cacheKey, "--release-key", releaseKey],
      "--json",
    ]);
    expect(agents.r.code, agents.r.stderr).toBe(0);
    expectDocumented(title, agents.r, agents.value);
    const ssh = await json(["doctor", "--fleet", sshFleet, "--json"]);
    expect(ssh.r.code).toBe(1);
    expect(ssh.value).toMatchObject({ ok: false });
    expectDocumented(title, ssh.r, ssh.value);
    expectDocumentedError(
      title,
      await nixship(["doctor", "--fleet", sshFleet, "--on", "@nope", "--json"]),
      2,
    );
  });

  it("secrets list: a secret set, one missing, and a host whose published key is not its pin", async () => {
    const title = "`nixship secrets list --json`";
    const dir = join(work, "secrets");
    await mkdir(dir);
    await run("ln", ["-s", EXAMPLES_DIR, join(dir, "examples")]);
    const key = async (name: string) => {
      await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, name)]);
      return (await readFile(join(dir, `${name}.pub`), "utf8")).split(" ").slice(0, 2).join(" ");
    };
    await runOk("age-keygen", ["-o", join(dir, "admin.txt")]);
    const admin = /age1[0-9a-z]+/.exec(await readFile(join(dir, "admin.txt"), "utf8"))?.[0];
    const doc = JSON.parse(await readFile(agentFleet, "utf8"));
    const fleet = join(dir, "nixship.json");
    const system = "path:./examples#web-v1";
    await writeFile(
      fleet,
      JSON.stringify({
        ...doc,
        hosts: {
          db1: { tags: ["db"], delivery: "agent", hostKey: await key("db1"), system },
          // No hostKey: the key its agent published to the store, pinned on first use.
          db2: { tags: ["db"], delivery: "agent", system },
        },
        secrets: {
          admins: [admin],
          entries: { "db-password": { hosts: "@db", owner: "postgres" }, token: { hosts: "db1" } },
        },
      }),
    );
    const store = new FsStore(storeDir, { fsync: false });
    const publish = async (pub: string) =>
      store.put("status/host-keys/db2.pub", Buffer.from(`${pub}\n`));
    await publish(await key("db2"));
    await writeFile(join(dir, "password"), "not-a-real-password");
    const writes =
      "`nixship secrets set --json`, `nixship secrets edit --json` and `nixship secrets rekey --json`";
    const set = await json([
      ...["secrets", "set", "db-password", "--from", join(dir, "password"), "--fleet", fleet],
      "--json",
    ]);
    expect(set.r.code, set.r.stderr).toBe(0);
    expect(set.value).toMatchObject({
      name: "db-password",
      hosts: ["db1", "db2"],
      recipients: 3,
      // db2's published key, trusted on first sight: said with its fingerprint.
      pinned: [{ host: "db2", fingerprint: expect.stringMatching(/^SHA256:/) }],
    });
    expectDocumented(writes, set.r, set.value);
    // An editor that changes nothing: nothing written.
    const identity = ["--identity", join(dir, "admin.txt")];
    const edited = await nixship(
      ["secrets", "edit", "db-password", ...identity, "--fleet", fleet, "--json"],
      { env: { EDITOR: "true" } },
    );
    expect(edited.code, edited.stderr).toBe(0);
    expect(JSON.parse(edited.stdout)).toMatchObject({ name: "db-password", changed: false });
    expectDocumented(writes, edited, JSON.parse(edited.stdout));
    const rekeyed = await json([
      "secrets",
      "rekey",
      "db-password",
      "--force",
      ...identity,
      "--fleet",
      fleet,
      "--json",
    ]);
    expect(rekeyed.r.code, rekeyed.r.stderr).toBe(0);
    expect(rekeyed.value).toEqual({
      secrets: [{ name: "db-password", outcome: "rekeyed", hosts: ["db1", "db2"], recipients: 3 }],
      pinned: [],
    });
    expectDocumented(writes, rekeyed.r, rekeyed.value);
    expectDocumentedError(
      writes,
      await nixship(["secrets", "set", "db-password", "-", "--fleet", fleet, "--json"], {
        input: Buffer.alloc(0),
      }),
      2,
    );
    const listed = await json(["secrets", "list", "--fleet", fleet, "--json"]);
    expect(listed.r.code).toBe(1);
    expect(listed.value).toMatchObject({
      secrets: [
        { name: "db-password", state: "ok" },
        { name: "token", state: "missing" },
      ],
      hostKeysChanged: [],
    });
    expectDocumented(title, listed.r, listed.value);
    // db2 publishes another key than the one pinned.
    await publish(await key("db2-new"));
    await store.close();
    const changed = await json(["secrets", "list", "--fleet", fleet, "--json"]);
    expect(changed.r.code).toBe(1);
    expect(changed.value).toMatchObject({ hostKeysChanged: [{ host: "db2" }] });
    expectDocumented(title, changed.r, changed.value);
    expectDocumentedError(
      title,
      await nixship(["secrets", "list", "--fleet", join(dir, "none.json"), "--json"]),
      2,
    );
  });
});

/**
 * Agents of `channel` in the directory store `dir`, until `stop`: each host a release names
 * reports success on it, once, with its report from `reports` (the agent's `pruned`; null: none).
 */
async function playAgents(
  dir: string,
  channel: string,
  reports: Readonly<Record<string, PruneReport | null>>,
  stop: AbortSignal,
): Promise<void> {
  const store = new FsStore(dir, { fsync: false });
  const answered = new Set<string>();
  try {
    while (!stop.aborted) {
      const read = await readChannel(store, channel);
      if (read.status === "found") {
        const { release } = parseRelease(read.bytes, "the channel");
        for (const [host, entry] of Object.entries(release.hosts)) {
          if (answered.has(`${release.seq}/${host}`) || reports[host] === undefined) continue;
          answered.add(`${release.seq}/${host}`);
          const now = new Date().toISOString();
          await writeStatus(store, {
            version: 1,
            host,
            mode: "agent",
            channel,
            seq: release.seq,
            desired: entry.path,
            current: entry.path,
            generation: 4,
            previous: null,
            ...(reports[host] === null ? {} : { pruned: reports[host] }),
            state: "success",
            phase: null,
            error: null,
            rolledBack: null,
            startedAt: now,
            updatedAt: now,
          });
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await store.close();
  }
}
