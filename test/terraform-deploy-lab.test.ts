// The deploy module's local-exec command, taken from the module's HCL,
// its interpolations filled in by the test's renderer (which refuses anything it does not
// understand), and run as-is by /bin/sh (the interpreter the module names) against a lab of
// two hosts: it deploys, hosts then run the store paths given, and a failed deploy fails the
// command (so it fails `terraform apply`). Every value reaches nixship as one argument, even
// a fleet file path full of shell syntax.
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, nixship, run } from "../support/cli.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";
import { evaluateValue, type HclValue, RenderError } from "./support/hcl-expr.js";
import { loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LAB = "tfd";
const HOSTS = ["tfd1", "tfd2"];
let work: string;
let labsDir: string;
let lab: { number: number; dir: string; hosts: { name: string; address: string }[] };
let systems: Record<ExampleSystem, string>;
let mod: TfModule;
/** The lab's fleet file and cache key, copied to a directory whose name is shell syntax. */
let fleetFile: string;
let keyFile: string;
const env = () => ({ NIXSHIP_LAB_DIR: labsDir });

/** The provisioner of the module's terraform_data: its command and interpreter, as written. */
function provisioner(): { command: unknown; interpreter: unknown } {
  const resource = mod.resources.get("terraform_data.deploy");
  const p = (
    resource?.body.provisioner as Record<string, { command: unknown; interpreter: unknown }[]>
  )?.["local-exec"]?.[0];
  if (p === undefined) throw new Error("terraform_data.deploy has no local-exec provisioner");
  return p;
}

/** The command Terraform would run for these variables (the rest keep their defaults). */
async function renderCommand(
  vars: Record<string, HclValue>,
): Promise<{ argv0: string; args: string[] }> {
  const resolve = moduleResolver(mod, { vars });
  const { command, interpreter } = provisioner();
  const shell = (await evaluateValue(interpreter, resolve)) as string[];
  const text = await evaluateValue(command, resolve);
  expect(typeof text).toBe("string");
  const [argv0, ...flags] = shell;
  return { argv0: argv0 as string, args: [...flags, text as string] };
}

/** Runs the rendered command as Terraform's local-exec would: interpreter + command. */
function runLocalExec(rendered: { argv0: string; args: string[] }) {
  const nodeDir = dirname(process.execPath);
  return run(rendered.argv0, rendered.args, {
    env: { ...env(), PATH: `${nodeDir}:${process.env.PATH ?? ""}` },
    cwd: work,
  });
}

async function setFleetSystems(systemOf: Record<string, string>): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const [host, path] of Object.entries(systemOf))
    (doc.hosts[host] as { system: string }).system = path;
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

function deployVars(storePaths: Record<string, string>): Record<string, HclValue> {
  return {
    nixship: `node ${NIXSHIP_BIN}`,
    fleet_file: fleetFile,
    store_paths: storePaths,
    cache_url: `file://${join(lab.dir, "cache")}`,
    key_file: keyFile,
    extra_args: ["--serve-cache", `10.231.${lab.number}.1:0`, "--confirm-timeout", "30"],
  };
}

interface StatusRow {
  host: string;
  current?: string;
}

async function currentSystems(): Promise<Record<string, string | undefined>> {
  const r = await nixship(["status", "--fleet", fleetFile, "--json"], { env: env() });
  const rows = (JSON.parse(r.stdout) as { hosts: StatusRow[] }).hosts;
  return Object.fromEntries(rows.map((row) => [row.host, row.current]));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-tf-deploy-"));
  labsDir = join(work, "labs");
  mod = await loadModule(join(ROOT, "terraform/modules/deploy"), ROOT);
  const [up, built] = await Promise.all([
    nixship(["lab", "up", String(HOSTS.length), "--name", LAB, "--json"], { env: env() }),
    buildExampleSystems(),
  ]);
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
  systems = built;
  // A directory name a shell would misread in every way, unless the value is quoted.
  const hostile = join(work, `it's a "fleet" $HOME; $(touch pwned) *`);
  await mkdir(hostile);
  fleetFile = join(hostile, "nixship.json");
  keyFile = join(hostile, "cache key.sec");
  await copyFile(join(lab.dir, "nixship.json"), fleetFile);
  await copyFile(join(lab.dir, "cache.sec"), keyFile);
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("the deploy module's local-exec, rendered from its HCL", () => {
  it("runs under /bin/sh -c, triggered by the store paths and the cache URL only", async () => {
    const resource = mod.resources.get("terraform_data.deploy")?.body ?? {};
    expect(
      await evaluateValue(provisioner().interpreter, moduleResolver(mod, { vars: {} })),
    ).toEqual(["/bin/sh", "-c"]);
    const vars = {
      store_paths: { tfd1: systems["web-v1"] },
      fleet_file: "f.json",
      cache_url: "s3://b",
    };
    expect(await evaluateValue(resource.triggers_replace, moduleResolver(mod, { vars }))).toEqual({
      store_paths: { tfd1: systems["web-v1"] },
      cache_url: "s3://b",
    });
  });

  it("passes every value as one word, whatever it holds", async () => {
    // With printf as "nixship", the shell prints each argument it was given on its own line.
    const nasty = [`a'b`, "$(touch pwned)", "x y", "*", "`id`", "\\n", '"q"', "tab\there"];
    const rendered = await renderCommand({
      nixship: "printf '[%s]\\n'",
      fleet_file: "fleet 'dir'/nixship.json",
      store_paths: { b: systems["web-v2"], a: systems["web-v1"] },
      key_file: "key $HOME.sec",
      release_key_file: "rel;ease.sec",
      via: "agent",
      extra_args: nasty,
    });
    const r = await runLocalExec(rendered);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      [
        "deploy",
        "--fleet",
        "fleet 'dir'/nixship.json",
        "--on",
        "a,b",
        "--via",
        "agent",
        "--system",
        `a=${systems["web-v1"]}`,
        "--system",
        `b=${systems["web-v2"]}`,
        "--key",
        "key $HOME.sec",
        "--release-key",
        "rel;ease.sec",
        "--wait-reachable",
        "600",
        ...nasty,
        "--json",
      ]
        .map((a) => `[${a}]\n`)
        .join(""),
    );
    // Empty key files are left out altogether; new hosts are waited for by default.
    const bare = await runLocalExec(
      await renderCommand({
        nixship: "printf '[%s]\\n'",
        fleet_file: "f",
        store_paths: { a: systems["web-v1"] },
      }),
    );
    expect(bare.stdout).toBe(
      `[deploy]\n[--fleet]\n[f]\n[--on]\n[a]\n[--via]\n[ssh]\n[--system]\n[a=${systems["web-v1"]}]\n[--wait-reachable]\n[600]\n[--json]\n`,
    );
    // wait_reachable = 0: hosts are asked once, and the flag is left out.
    const once = await runLocalExec(
      await renderCommand({
        nixship: "printf '[%s]\n'",
        fleet_file: "f",
        store_paths: { a: systems["web-v1"] },
        wait_reachable: 0,
      }),
    );
    expect(once.stdout).not.toContain("--wait-reachable");
    expect(existsSync(join(work, "pwned"))).toBe(false);
  });

  it("the renderer refuses what it cannot fill in rather than guessing", async () => {
    await expect(renderCommand({ nixship: "nixship" })).rejects.toThrow(RenderError);
    await expect(renderCommand({ nixship: "nixship" })).rejects.toThrow(
      /var\.store_paths|var\.fleet_file/,
    );
  });
});

describe("run as-is against a lab of two hosts", () => {
  it("deploys: exit 0, and each host runs the store path it was given", async () => {
    const storePaths = { tfd1: systems["web-v2"], tfd2: systems["web-v3"] };
    await setFleetSystems(storePaths);
    const r = await runLocalExec(await renderCommand(deployVars(storePaths)));
    expect(r.code, `stderr:\n${r.stderr}\nstdout:\n${r.stdout}`).toBe(0);
    const summary = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; ok?: boolean })
      .find((e) => e.type === "summary");
    expect(summary?.ok).toBe(true);
    expect(await currentSystems()).toEqual(storePaths);
    // Nothing in the hostile path was run by the shell.
    expect(existsSync(join(work, "pwned"))).toBe(false);
  });

  it("deploys the store paths given, whatever the fleet file names: an earlier var file restored rolls back", async () => {
    // The fleet file names web-v1 for both; Terraform's var file, restored, holds other paths.
    await setFleetSystems({ tfd1: systems["web-v1"], tfd2: systems["web-v1"] });
    const storePaths = { tfd1: systems["web-v3"], tfd2: systems["web-v2"] };
    const r = await runLocalExec(await renderCommand(deployVars(storePaths)));
    expect(r.code, `stderr:\n${r.stderr}\nstdout:\n${r.stdout}`).toBe(0);
    expect(await currentSystems()).toEqual(storePaths);
  });

  it("a failed deploy fails the command (and so the apply); the host keeps its system", async () => {
    const before = await currentSystems();
    const storePaths = { tfd1: systems["web-failing"], tfd2: systems["web-v3"] };
    await setFleetSystems(storePaths);
    const r = await runLocalExec(await renderCommand(deployVars(storePaths)));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("switch-to-configuration switch exited with 4");
    expect(await currentSystems()).toEqual(before);
  });
});
