// examples/aws/README.md replayed: every command of its ```sh blocks is either run here as
// written (by /bin/sh, in a directory laid out as the walkthrough's: examples/aws's files, the
// user's flake in git beside them) or listed in NOT_RUN with the reason, and the last test
// fails for a command that is neither, so the walkthrough cannot grow an untested command.
//
// Run: the key generation; `nix build --out-link` + `readlink` of the nixship package, on the
// machine's Nix (Debian 12's 2.8) and on the current Nix (2.26, in a private mount namespace
// with a /nix of its own); the tfvars copy; `nixship push` into the S3 bucket; `terraform
// output -json`, the base fleet heredoc and `fleet from-terraform` (ssm, then agent); `nixship
// terraform vars`; `nixship deploy --via agent` to two lab hosts (web1, web2) running pull
// agents, again for a second system, and once more for a system whose health check fails;
// `nixship status`; `nixship rollback` of the agent hosts. The NixOS module snippet is
// evaluated by Nix against nixship's flake's exports and its module's options.
//
// Not run (NOT_RUN below): `terraform init`, `apply`, `console` and `destroy` need an AWS
// account (and `init` the registry's providers, hashicorp/tls among them, which cannot be
// fetched here); `nixship deploy --via ssm` and the ssm `rollback` need SSM Run Command on EC2
// instances (the document's shell on a lab host is test/ssm-document-lab.test.ts; the ssm
// delivery against a scripted SSM, test/ssm-delivery.test.ts). No terraform binary runs:
// scripts/setup.sh installs none (no registry reachable here has one), so a test needing it
// would fail on a fresh machine; test/terraform-*.test.ts check the modules from their HCL.
//
// Stand-ins, only where AWS or the network would be: `terraform output` answers from a fixture
// of examples/aws's outputs (test/support/aws-terraform-output.ts) naming the lab hosts and the
// lab's store, as after an apply; the nixship flake (`git+https://example.org/...`) is a local
// flake whose package is a small derivation named nixship-0.1.0; the bucket is s3rver's (the
// URL gets `&endpoint=`); the hosts' systems are the example systems (examples/system.nix), and
// their agents are given the keys and channel that the host module's user-data would give them.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { parseRelease } from "../src/release/release-parse.js";
import { readChannel } from "../src/release/release-store.js";
import { openStore } from "../src/store/url.js";
import { type CliRun, NIXSHIP_BIN, run, runOk } from "../support/cli.js";
import { makeCurrentNixRoot, runWithCurrentNix } from "../support/current-nix.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import {
  type AgentLab,
  agentConfigFile,
  agentLog,
  labAgents,
  served,
  startAgentLab,
} from "./support/agent-lab.js";
import { awsTerraformOutput, type OutputHost } from "./support/aws-terraform-output.js";
import {
  buildExampleSystems,
  EXAMPLES_DIR,
  type ExampleSystem,
} from "./support/example-systems.js";
import { fleetSchemaProblems } from "./support/json-schema.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const AWS_DIR = join(ROOT, "examples/aws");
const README = join(AWS_DIR, "README.md");
const NIX_SYSTEM = `${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux`;
/** The bucket of terraform.tfvars.example and the README. */
const BUCKET = "example-nixship-store-0123";
/** Lab "web": its hosts are web1 and web2, the example's hosts. */
const LAB = "web";
const HOSTS = ["web1", "web2"] as const;
const INSTANCE_IDS = { web1: "i-0a1b2c3d4e5f60718", web2: "i-0f9e8d7c6b5a49382" };
const CHANNEL = "production";

/** README commands that cannot run here, each with why. Matched by the command's text. */
const NOT_RUN: Readonly<Record<string, string>> = {
  "terraform init":
    "needs the registry's providers (hashicorp/aws, hashicorp/tls), which cannot be fetched here",
  "terraform apply -target=module.cache": "creates the S3 bucket: needs an AWS account",
  "terraform apply": "creates EC2 instances, IAM roles and the SSM document: needs an AWS account",
  "nixship deploy --fleet nixship.json --on @web --via ssm --key cache.sec":
    "SSM Run Command on EC2 instances (its document on a lab host: test/ssm-document-lab.test.ts)",
  "nixship rollback --fleet nixship.json --on @web":
    "SSM Run Command on EC2 instances (the ssm delivery's rollback: test/ssm-delivery.test.ts)",
  "echo 'module.github_oidc[0].role_arn' | terraform console":
    "reads the state of an apply against AWS",
  "echo 'module.github_oidc[0].plan_role_arn' | terraform console":
    "reads the state of an apply against AWS",
  "terraform destroy": "destroys what an apply made in AWS",
};

interface ReadmeCommand {
  /** As written: continuation lines and a heredoc's body included. */
  readonly text: string;
  /** The text without a trailing comment: what NOT_RUN and the tests name it by. */
  readonly key: string;
}

/** The commands of the README's ```sh blocks, in order. */
function readmeCommands(markdown: string): ReadmeCommand[] {
  const commands: ReadmeCommand[] = [];
  const blocks = markdown.matchAll(/^ *```sh\n([\s\S]*?)^ *```$/gm);
  for (const [, body] of blocks) {
    const lines = (body ?? "").split("\n");
    for (let i = 0; i < lines.length; i++) {
      let text = lines[i] ?? "";
      if (text.trim() === "" || text.trim().startsWith("#")) continue;
      while (text.endsWith("\\") && i + 1 < lines.length) text = `${text}\n${lines[++i]}`;
      const heredoc = /<<-?\s*'?(\w+)'?/.exec(text);
      if (heredoc !== null) {
        while (i + 1 < lines.length && lines[i] !== heredoc[1]) text = `${text}\n${lines[++i]}`;
        commands.push({ text, key: text });
        continue;
      }
      commands.push({ text, key: text.replace(/\s+#\s.*$/, "").trim() });
    }
  }
  return commands;
}

let work: string;
/** Where the walkthrough's commands run: examples/aws's files and the user's flake. */
let dir: string;
let bin: string;
let readme: ReadmeCommand[];
let systems: Record<ExampleSystem, string>;
let s3: S3Server;
let lab: AgentLab;
let outputsFixture: Record<string, unknown>;
/** The nixship package the walkthrough builds, as `readlink` printed it. */
let nixshipPackage: string;
/** README command keys this file ran. */
const ran = new Set<string>();

/** The one README command whose key starts with `start`. */
function readmeCommand(start: string): ReadmeCommand {
  const found = readme.filter((c) => c.key.startsWith(start));
  const keys = new Set(found.map((c) => c.key));
  if (keys.size !== 1) {
    throw new Error(
      `examples/aws/README.md has ${keys.size} commands starting with ${JSON.stringify(start)}: ${[...keys].join(" | ")}`,
    );
  }
  return found[0] as ReadmeCommand;
}

/** `from` must be in the command (else the README changed under the test), replaced by `to`. */
type Substitution = readonly [from: string, to: string];

function substituted(command: ReadmeCommand, substitutions: readonly Substitution[]): string {
  let text = command.text;
  for (const [from, to] of substitutions) {
    expect(text, `the README's command no longer holds ${from}`).toContain(from);
    text = text.replaceAll(from, to);
  }
  return text;
}

function shellEnv(): NodeJS.ProcessEnv {
  return { PATH: `${bin}:${process.env.PATH ?? ""}`, NIX_CONFIG: TEST_NIX_CONFIG };
}

/** Runs the README command that starts with `start` by /bin/sh in `cwd` (default: `dir`). */
async function runReadme(
  start: string,
  options: { substitutions?: readonly Substitution[]; cwd?: string } = {},
): Promise<CliRun> {
  const command = readmeCommand(start);
  ran.add(command.key);
  const text = substituted(command, options.substitutions ?? []);
  return run("/bin/sh", ["-c", text], { cwd: options.cwd ?? dir, env: shellEnv() });
}

/** As runReadme; the command must exit 0. */
async function runReadmeOk(
  start: string,
  options: { substitutions?: readonly Substitution[]; cwd?: string } = {},
): Promise<CliRun> {
  const r = await runReadme(start, options);
  expect(r.code, `${start}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
  return r;
}

/** The user's flake: web1 and web2 run `system` (an example system), committed to git. */
async function setUserSystems(system: ExampleSystem): Promise<void> {
  const host = (name: string) =>
    `nixosConfigurations.${name}.config.system.build.toplevel = mkSystem { system = "${NIX_SYSTEM}"; name = "${system}"; version = "${system.replace(/^web-v?/, "")}"; ${system === "web-broken" ? 'health = "fail"; ' : ""}};`;
  await writeFile(
    join(dir, "flake.nix"),
    `{
  outputs = { self }:
    let mkSystem = import ./system.nix;
    in {
      ${host("web1")}
      ${host("web2")}
    };
}
`,
  );
  await runOk("git", ["-C", dir, "add", "flake.nix", "system.nix", "web"]);
  await runOk("git", [
    ...["-C", dir, "-c", "user.name=walkthrough", "-c", "user.email=walkthrough@example.org"],
    ...["commit", "-q", "--allow-empty", "-m", system],
  ]);
}

/** The example system each host serves, by name. */
async function servedSystems(): Promise<Record<string, string>> {
  return Object.fromEntries(
    await Promise.all(HOSTS.map(async (h) => [h, await served(lab, h)] as const)),
  );
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(dir, file), "utf8")) as Record<string, unknown>;
}

beforeAll(async () => {
  readme = readmeCommands(await readFile(README, "utf8"));
  work = await mkdtemp(join(tmpdir(), "nixship-aws-walkthrough-"));
  dir = join(work, "aws");
  await cp(AWS_DIR, dir, { recursive: true });
  // The user's flake, here in a git repository as the walkthrough assumes.
  await cp(join(EXAMPLES_DIR, "system.nix"), join(dir, "system.nix"));
  await cp(join(EXAMPLES_DIR, "web"), join(dir, "web"), { recursive: true });
  await runOk("git", ["init", "-q", dir]);
  await setUserSystems("web-v1");
  // nixship's flake, as far as this walkthrough uses it: packages.SYSTEM.default.
  await mkdir(join(work, "nixship-flake"));
  await writeFile(
    join(work, "nixship-flake", "flake.nix"),
    `{
  outputs = { self }: {
    packages.${NIX_SYSTEM}.default = derivation {
      name = "nixship-0.1.0";
      system = "${NIX_SYSTEM}";
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      args = [ "-c" "mkdir -p $out/bin && printf '#!/bin/sh\\\\n' > $out/bin/nixship" ];
    };
  };
}
`,
  );
  bin = join(work, "bin");
  await mkdir(bin);
  await writeFile(
    join(bin, "nixship"),
    `#!/bin/sh\nexec '${process.execPath}' '${NIXSHIP_BIN}' "$@"\n`,
    { mode: 0o755 },
  );
  const [started, built, lab0] = await Promise.all([
    startS3Server(BUCKET),
    buildExampleSystems(),
    startAgentLab(LAB, { hosts: HOSTS.length }),
  ]);
  s3 = started;
  systems = built;
  lab = lab0;
  // What `terraform output` says after the walkthrough's apply, with the lab in AWS's place.
  const host = (name: (typeof HOSTS)[number]): OutputHost => ({
    instance_id: INSTANCE_IDS[name],
    private_ip: lab.hosts.find((h) => h.name === name)?.address ?? "",
    public_ip: "",
    ssh_host_public_key: "",
    tags: { Name: name, Role: "web", "nixship-host": name },
  });
  outputsFixture = awsTerraformOutput(lab.storeUrl, { web1: host("web1"), web2: host("web2") });
  const outputsFile = join(work, "terraform-outputs.json");
  await writeFile(outputsFile, JSON.stringify(outputsFixture, null, 2));
  const raw = Object.entries(outputsFixture)
    .filter(([, o]) => typeof (o as { value: unknown }).value === "string")
    .map(
      ([name, o]) => `  "output -raw ${name}") printf '%s' '${(o as { value: string }).value}' ;;`,
    );
  await writeFile(
    join(bin, "terraform"),
    [
      "#!/bin/sh",
      "# Stands in for `terraform output` after an apply; anything else is not run here.",
      'case "$*" in',
      `  "output -json") exec cat '${outputsFile}' ;;`,
      ...raw,
      '  *) echo "terraform $*: not run in this test" >&2; exit 127 ;;',
      "esac",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
}, 300_000);

afterAll(async () => {
  await lab?.down();
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("examples/aws/README.md, replayed", () => {
  it("1. Keys: generates the cache and release keys", async () => {
    await runReadmeOk("nixship key generate --name cache-1 ");
    await runReadmeOk("nixship key generate --name release-1 ");
    const cachePub = (await readFile(join(dir, "cache.pub"), "utf8")).trim();
    const releasePub = (await readFile(join(dir, "release.pub"), "utf8")).trim();
    expect(cachePub).toMatch(/^cache-1:[A-Za-z0-9+/]{43}=$/);
    expect(releasePub).toMatch(/^release-1:[A-Za-z0-9+/]{43}=$/);
  });

  it("2. Variables: nix build --out-link and readlink print nixship's store path, on Nix 2.8 and on the current Nix", async () => {
    const flakeRef: Substitution = [
      "git+https://example.org/you/nixship.git#packages.x86_64-linux.default",
      `path:${join(work, "nixship-flake")}#packages.${NIX_SYSTEM}.default`,
    ];
    await runReadmeOk("nix build ", { substitutions: [flakeRef] });
    const printed = (await runReadmeOk("readlink result-nixship")).stdout.trim();
    expect(printed).toMatch(/^\/nix\/store\/[0-9a-z]{32}-nixship-0\.1\.0$/);
    await runOk("nix-store", ["--check-validity", printed]);
    nixshipPackage = printed;

    // The same two commands on the current Nix, in a directory of their own.
    const nixRoot = await makeCurrentNixRoot();
    try {
      const other = join(work, "current-nix");
      await mkdir(other);
      const script = [
        substituted(readmeCommand("nix build "), [flakeRef]),
        readmeCommand("readlink result-nixship").text,
      ].join("\n");
      const r = await runWithCurrentNix(
        nixRoot,
        "/bin/sh",
        ["-ec", `nix --version >&2\n${script}`],
        { cwd: other, env: shellEnv() },
      );
      expect(r.code, r.stderr).toBe(0);
      const machine = (await runOk("nix", ["--version"])).trim();
      const current = r.stderr.split("\n")[0] ?? "";
      expect(current, "the two Nixes differ").not.toBe(machine);
      expect(current).toMatch(/^nix \(Nix\) \d+\.\d+/);
      expect(r.stdout.trim(), "both Nixes print the same store path").toBe(printed);
    } finally {
      await rm(nixRoot, { recursive: true, force: true });
    }

    await runReadmeOk("cp terraform.tfvars.example terraform.tfvars");
    expect(await readFile(join(dir, "terraform.tfvars"), "utf8")).toBe(
      await readFile(join(AWS_DIR, "terraform.tfvars.example"), "utf8"),
    );
    // The document the ssm-document module reads: the one nixship's build wrote too.
    await runReadmeOk("nixship ssm document > nixship-ssm-document.json");
    expect(await readFile(join(dir, "nixship-ssm-document.json"), "utf8")).toBe(
      await readFile(join(ROOT, "dist/ssm-document.json"), "utf8"),
    );
  });

  it("3. The cache first: pushes nixship's closure, signed, into the bucket", async () => {
    const url = `s3://${BUCKET}?region=eu-west-1`;
    const s3Url = `${url}&endpoint=${encodeURIComponent(s3.endpoint)}`;
    await runReadmeOk("nixship push ", { substitutions: [[url, s3Url]] });
    const cachePub = (await readFile(join(dir, "cache.pub"), "utf8")).trim();
    const verify = await run(process.execPath, [
      ...[NIXSHIP_BIN, "verify", "--cache", s3Url, "--trusted-key", cachePub, nixshipPackage],
    ]);
    expect(verify.code, verify.stderr).toBe(0);
    const store = await openStore(s3Url);
    try {
      const hash = nixshipPackage.slice("/nix/store/".length).split("-")[0];
      expect(await store.head(`${hash}.narinfo`)).toBeDefined();
    } finally {
      await store.close();
    }
  });

  it("4. The fleet: a fleet file from Terraform's outputs, with the base fleet's health checks", async () => {
    // The hosts boot as the host module's user-data sets them up: the store, the channel and
    // the keys of terraform.tfvars (cache.pub, release.pub).
    const cachePub = (await readFile(join(dir, "cache.pub"), "utf8")).trim();
    const releasePub = (await readFile(join(dir, "release.pub"), "utf8")).trim();
    for (const h of HOSTS) {
      const file = agentConfigFile(lab, h);
      const config = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
      await writeFile(
        file,
        JSON.stringify({
          ...config,
          channel: CHANNEL,
          cacheKeys: [cachePub],
          releaseKeys: [releasePub],
        }),
      );
    }
    await labAgents(lab, "stop");
    await labAgents(lab, "start");

    await runReadmeOk("terraform output -json > tf-outputs.json");
    expect(await readJson("tf-outputs.json")).toEqual(outputsFixture);
    await runReadmeOk("cat > nixship.base.json <<EOF");
    const base = await readJson("nixship.base.json");
    expect(base).toMatchObject({
      cache: { url: lab.storeUrl, publicKeys: [cachePub] },
      releases: { channel: CHANNEL, publicKeys: [releasePub] },
    });
    const baseChecks = (base.policy as { health: { commands: unknown[] } }).health.commands;
    expect(baseChecks.length).toBeGreaterThan(0);

    await runReadmeOk("nixship fleet from-terraform tf-outputs.json --via ssm ");
    const doc = await readJson("nixship.json");
    expect(fleetSchemaProblems(doc)).toEqual([]);
    const fleet = await loadFleet(join(dir, "nixship.json"));
    expect(
      fleet.hosts.map((h) => [h.name, h.delivery, h.delivery === "ssm" ? h.instanceId : ""]),
    ).toEqual(HOSTS.map((h) => [h, "ssm", INSTANCE_IDS[h]]));
    expect(fleet.hosts.map((h) => h.tags)).toEqual([["web"], ["web"]]);
    expect(fleet.ssm).toMatchObject({ documentName: "nixship-activate", region: "eu-west-1" });
    // Terraform knows no health checks: the fleet has the base's, and only those.
    expect(fleet.policy.health.commands).toEqual(
      baseChecks.map((c) => expect.objectContaining(c as object)),
    );
    expect(fleet.policy.health.http).toEqual([]);
  });

  it("5. Deploy through Terraform: terraform vars gives the deploy module the built systems", async () => {
    await runReadmeOk("nixship terraform vars ");
    const vars = await readJson("nixship.auto.tfvars.json");
    expect(vars).toEqual({
      store_paths: { web1: systems["web-v1"], web2: systems["web-v1"] },
      cache_url: lab.storeUrl,
    });
  });

  it("5. Deploy by releases: the agents apply it and run the base's check on the hosts", async () => {
    await runReadmeOk("nixship fleet from-terraform tf-outputs.json --via agent ");
    const fleet = await loadFleet(join(dir, "nixship.json"));
    expect(fleet.hosts.map((h) => h.delivery)).toEqual(["agent", "agent"]);
    const check = fleet.policy.health.commands[0]?.run ?? "";
    expect(check).toContain("curl");

    await runReadmeOk("nixship deploy --fleet nixship.json --via agent ");
    expect(await servedSystems()).toEqual({ web1: "web-v1", web2: "web-v1" });
    // The check travelled in the release, and each host's agent ran it there.
    const store = await openStore(lab.storeUrl);
    try {
      const channel = await readChannel(store, CHANNEL);
      if (channel.status !== "found") throw new Error(`no channel ${CHANNEL}`);
      const { release } = parseRelease(channel.bytes, "channel");
      expect(release.health.commands.map((c) => c.run)).toEqual([check]);
    } finally {
      await store.close();
    }
    for (const h of HOSTS) expect(await agentLog(lab, h)).toContain(`health: ${check}`);

    // A later change is the same command.
    await setUserSystems("web-v2");
    await runReadmeOk("nixship deploy --fleet nixship.json --via agent ");
    expect(await servedSystems()).toEqual({ web1: "web-v2", web2: "web-v2" });
  });

  it("6. Status: both hosts report the system they run", async () => {
    // A host that already ran its entry when a later wave's release came (the canary)
    // acknowledges that release at its next poll: until then status calls it behind (exit 1).
    let r = await runReadme("nixship status --fleet nixship.json");
    for (const deadline = Date.now() + 60_000; r.code !== 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      r = await runReadme("nixship status --fleet nixship.json");
    }
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    // The system by its name (web-v2's toplevel), as the table shows it.
    const name = (systems["web-v2"] ?? "").replace(/^\/nix\/store\/[0-9a-z]{32}-/, "");
    for (const h of HOSTS) {
      expect(r.stdout).toMatch(new RegExp(`^${h}\\s+agent\\s+${name}\\s+\\d+\\s+in-step\\b`, "m"));
    }
  });

  it("7. Roll back: the agent hosts go back to the system before", async () => {
    await runReadmeOk("nixship rollback --fleet nixship.json --on @web --release-key release.sec");
    expect(await servedSystems()).toEqual({ web1: "web-v1", web2: "web-v1" });
  });

  it("the base's health check stops a system that fails it: the canary goes back, the rest never get it", async () => {
    await setUserSystems("web-broken");
    const r = await runReadme("nixship deploy --fleet nixship.json --via agent ");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    // The failure names the base's check (the wording around it is activate.sh's).
    const output = `${r.stdout}\n${r.stderr}`;
    const fleet = await loadFleet(join(dir, "nixship.json"));
    expect(output).toMatch(/health/);
    expect(output).toContain(fleet.policy.health.commands[0]?.run ?? "(no check)");
    expect(await servedSystems()).toEqual({ web1: "web-v1", web2: "web-v1" });
  }, 180_000);

  it("the NixOS module snippet is a flake that uses nixship's flake's agent module and only its options", async () => {
    const snippets = [
      ...(await readFile(README, "utf8")).matchAll(/^( *)```nix\n([\s\S]*?)^ *```$/gm),
    ];
    expect(snippets).toHaveLength(1);
    const [, indent = "", body = ""] = snippets[0] as RegExpMatchArray;
    const snippetDir = join(work, "snippet");
    await mkdir(snippetDir);
    const unindented = body
      .split("\n")
      .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
      .join("\n");
    await writeFile(join(snippetDir, "flake.nix"), unindented);
    // nixpkgs' nixosSystem returns its arguments; nixship is its flake's real outputs, with
    // its agent module marked (functions cannot be compared) to find it among the modules.
    const probe = `
let
  flake = import ${join(snippetDir, "flake.nix")};
  nixshipFlake = (import ${join(ROOT, "flake.nix")}).outputs { self = nixshipFlake; nixpkgs = null; };
  nixship = nixshipFlake // {
    nixosModules = nixshipFlake.nixosModules // { agent = { nixshipAgentModule = true; }; };
  };
  nixpkgs = { outPath = "/nixpkgs"; lib.nixosSystem = args: args; };
  out = flake.outputs { self = out; inherit nixpkgs nixship; };
  options = builtins.attrNames ((import ${join(ROOT, "packaging/nixos/nixship-agent.nix")} {
    config = { }; lib = { }; pkgs = { };
  }).options.services.nixship-agent);
  host = name:
    let
      system = out.nixosConfigurations.\${name};
      own = builtins.filter (m: builtins.isAttrs m && m ? services) system.modules;
      config = (builtins.head own).services.nixship-agent;
    in {
      inherit (system) system;
      usesAgentModule = builtins.any (m: m ? nixshipAgentModule) system.modules;
      paths = builtins.filter builtins.isString system.modules;
      hostName = (builtins.head own).networking.hostName;
      set = builtins.attrNames config;
      inherit (config) enable store channel;
    };
in {
  inputs = flake.inputs;
  exports = builtins.attrNames nixshipFlake.nixosModules;
  inherit options;
  hosts = builtins.listToAttrs (map (name: { inherit name; value = host name; })
    (builtins.attrNames out.nixosConfigurations));
}`;
    const result = JSON.parse(
      await runOk("nix-instantiate", ["--eval", "--strict", "--json", "--expr", probe]),
    ) as {
      inputs: Record<string, { url?: string; inputs?: Record<string, { follows?: string }> }>;
      exports: string[];
      options: string[];
      hosts: Record<
        string,
        {
          system: string;
          usesAgentModule: boolean;
          paths: string[];
          hostName: string;
          set: string[];
          enable: boolean;
          store: string;
          channel: string;
        }
      >;
    };
    expect(result.exports).toContain("agent");
    expect(result.options).toEqual(expect.arrayContaining(["enable", "package", "store"]));
    expect(result.inputs.nixship?.inputs?.nixpkgs?.follows).toBe("nixpkgs");
    expect(Object.keys(result.hosts)).toEqual([...HOSTS]);
    for (const [name, h] of Object.entries(result.hosts)) {
      expect(h.usesAgentModule, `${name} imports nixship.nixosModules.agent`).toBe(true);
      expect(h.paths).toEqual(["/nixpkgs/nixos/modules/virtualisation/amazon-image.nix"]);
      expect(h.hostName).toBe(name);
      expect(h.system).toBe("x86_64-linux");
      expect(
        h.set.filter((o) => !result.options.includes(o)),
        "options the module lacks",
      ).toEqual([]);
      // The package comes with the flake's module; the options without a default are set.
      expect(h.set).not.toContain("package");
      expect(h.set).toEqual(
        expect.arrayContaining(["enable", "store", "channel", "releaseKeys", "cacheKeys"]),
      );
      expect(h.enable).toBe(true);
      expect(h.store).toMatch(/^s3:\/\/[a-z0-9.-]+\?region=[a-z0-9-]+$/);
      expect(h.channel).toBe(CHANNEL);
    }
  });

  it("every command of the walkthrough ran above or is listed as not run, with why", () => {
    const keys = new Set(readme.map((c) => c.key));
    const neither = [...keys].filter((k) => !ran.has(k) && NOT_RUN[k] === undefined);
    expect(neither, "commands of examples/aws/README.md neither run nor listed in NOT_RUN").toEqual(
      [],
    );
    const stale = Object.keys(NOT_RUN).filter((k) => !keys.has(k));
    expect(stale, "NOT_RUN names commands the README no longer has").toEqual([]);
    expect([...ran].filter((k) => NOT_RUN[k] !== undefined)).toEqual([]);
    expect(ran.size).toBeGreaterThanOrEqual(14);
  });
});
