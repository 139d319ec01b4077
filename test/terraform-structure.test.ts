// Every .tf file under terraform/ and examples/ parses as HCL2
// (no terraform binary here: @cdktf/hcl2json), and every module there passes the structural
// checks: variables declared and used, module calls complete, references that resolve,
// templatefile() given what its template reads, READMEs that list exactly the inputs and
// outputs, the files and versions a module has, and the contracts between modules. Fixtures with
// deliberate mistakes (npcnix's remote_region among them) show that each check can fail and
// what it says when it does.
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  checkContract,
  checkDescriptions,
  checkLayout,
  checkModuleCalls,
  checkReadme,
  checkReferences,
  checkTemplateCalls,
  checkVariables,
  findTfFiles,
  loadModules,
  type ModuleContract,
  parseProblems,
  type TfModule,
} from "./support/terraform.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULES_DIR = join(ROOT, "terraform/modules");
const FIXTURES = join(ROOT, "test/fixtures/terraform");

/** Directories holding .tf files under terraform/ and examples/, found when the suite is collected. */
function moduleDirsNow(): string[] {
  const dirs = new Set<string>();
  const walk = (dir: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(dir, name);
      if (name === ".terraform" || name === "node_modules") continue;
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".tf")) dirs.add(dir);
    }
  };
  walk(join(ROOT, "terraform"));
  walk(join(ROOT, "examples"));
  return [...dirs].sort();
}

let repoModules: Promise<Map<string, TfModule>> | undefined;
function loadRepoModules(): Promise<Map<string, TfModule>> {
  repoModules ??= loadModules([join(ROOT, "terraform"), join(ROOT, "examples")], ROOT);
  return repoModules;
}

/** Every module of a fixture, shown relative to the fixtures folder; the first is its root. */
async function fixture(name: string) {
  const dir = join(FIXTURES, name);
  const modules = await loadModules([dir], FIXTURES);
  const root = modules.get(dir);
  if (root === undefined) throw new Error(`fixture ${name} has no .tf files at its root`);
  return { root, modules, lookup: (d: string) => modules.get(d) };
}

/** Each module's contract: the variables (types, defaults) and outputs other modules and users rely on. */
const CONTRACTS: Record<string, ModuleContract> = {
  "terraform/modules/cache": {
    variables: {
      // A fixed name or a generated one (exactly one of the two; a precondition).
      bucket_name: { type: "string", default: null },
      bucket_prefix: { type: "string", default: null },
      versioning: { type: "bool", default: false },
      force_destroy: { type: "bool", default: false },
      prefix: { type: "string", default: "" },
      tags: { type: "map(string)", default: {} },
    },
    outputs: [
      "bucket_name",
      "bucket_arn",
      "store_url",
      "host_read_policy_arn",
      "writer_policy_arn",
      "agent_policy_arn",
      "reader_policy_arn",
    ],
  },
  "terraform/modules/ssm-document": {
    variables: {
      // What `nixship ssm document` prints: the module keeps no copy of its own.
      document: { type: "string", required: true },
      name: { type: "string", default: "nixship-activate" },
      // Defaults baked into the document, associations by role, sender tags.
      default_substituters: { type: "string", default: "" },
      default_trusted_public_keys: { type: "string", default: "" },
      associations: { type: "map(string)", default: {} },
      sender_tag_values: { type: "list(string)", default: [] },
      create_association: { type: "bool", default: false },
      association_tag_key: { type: "string", default: "Role" },
      association_tag_values: { type: "list(string)", default: [] },
      store_path: { type: "string", default: "" },
      substituters: { type: "string", default: "" },
      trusted_public_keys: { type: "string", default: "" },
      tags: { type: "map(string)", default: {} },
    },
    outputs: [
      "document_name",
      "document_arn",
      "association_id",
      "association_ids",
      "sender_policy_json",
    ],
  },
  "terraform/modules/github-oidc": {
    variables: {
      repository: { type: "string", required: true },
      refs: { type: "list(string)", default: ["refs/heads/main"] },
      environments: { type: "list(string)", default: [] },
      name: { type: "string", default: "nixship-github-actions" },
      create_oidc_provider: { type: "bool", default: true },
      oidc_provider_arn: { type: "string", default: "" },
      cache_writer_policy_arn: { type: "string", required: true },
      send_ssm_commands: { type: "bool", default: true },
      ssm_sender_policy_json: { type: "string", default: null },
      create_plan_role: { type: "bool", default: false },
      cache_reader_policy_arn: { type: "string", default: null },
      tags: { type: "map(string)", default: {} },
    },
    outputs: ["role_arn", "role_name", "plan_role_arn", "oidc_provider_arn", "subjects"],
  },
  "terraform/modules/host": {
    variables: {
      name: { type: "string", required: true },
      subnet_id: { type: "string", required: true },
      vpc_id: { type: "string", required: true },
      instance_type: { type: "string", default: "t3.small" },
      ami_id: { type: "string", default: "" },
      ami_owners: { type: "list(string)", default: ["427812963091"] },
      ami_name_pattern: { type: "string", default: "nixos/24.11*" },
      architecture: { type: "string", default: "x86_64" },
      root_volume_size: { type: "number", default: 20 },
      tags: { type: "map(string)", default: {} },
      policy_arns: { type: "list(string)", default: [] },
      ssh_cidr_blocks: { type: "list(string)", default: [] },
      ingress_ports: { type: "list(number)", default: [] },
      ingress_cidr_blocks: { type: "list(string)", default: [] },
      key_name: { type: "string", default: null },
      agent_enabled: { type: "bool", default: true },
      // The agent's inputs: needed only when agent_enabled (a precondition says so).
      nixship_package: { type: "string", default: null },
      store_url: { type: "string", default: null },
      cache_public_keys: { type: "list(string)", default: null },
      release_public_keys: { type: "list(string)", default: null },
      channel: { type: "string", default: "production" },
      poll_interval: { type: "number", default: 30 },
    },
    outputs: [
      "name",
      "instance_id",
      "private_ip",
      "public_ip",
      "public_dns",
      "role_name",
      "role_arn",
      "security_group_id",
      "tags",
    ],
  },
  "terraform/modules/deploy": {
    variables: {
      store_paths: { type: "map(string)", required: true },
      cache_url: { type: "string", default: "" },
      fleet_file: { type: "string", required: true },
      via: { type: "string", default: "ssh" },
      nixship: { type: "string", default: "nixship" },
      key_file: { type: "string", default: "" },
      release_key_file: { type: "string", default: "" },
      extra_args: { type: "list(string)", default: [] },
    },
    outputs: ["hosts", "store_paths"],
  },
  "examples/aws": {
    variables: {
      store_paths: { type: "map(string)", default: {} },
      cache_url: { type: "string", default: "" },
      // Associations by role, and the CI roles (none unless a repository is named).
      ssm_associations: { type: "map(string)", default: {} },
      github_repository: { type: "string", default: "" },
      // examples/ci's jobs name the environment production: it alone may deploy.
      github_refs: { type: "list(string)", default: [] },
      github_environments: { type: "list(string)", default: ["production"] },
    },
    outputs: ["cache_url", "region", "ssm_document_name", "hosts"],
  },
};

describe("the repository's Terraform", () => {
  it("every .tf file under terraform/ and examples/ parses as HCL2", async () => {
    const files = [
      ...(await findTfFiles(join(ROOT, "terraform"))),
      ...(await findTfFiles(join(ROOT, "examples"))),
    ];
    const mine = ["cache", "ssm-document", "deploy", "ami-import", "github-oidc"].flatMap((m) =>
      ["main.tf", "variables.tf", "outputs.tf", "versions.tf"].map(
        (f) => `terraform/modules/${m}/${f}`,
      ),
    );
    expect(files.map((f) => relative(ROOT, f))).toEqual(expect.arrayContaining(mine));
    expect(await parseProblems(files, ROOT)).toEqual([]);
  });

  it("every directory under terraform/modules is a module", () => {
    const dirs = readdirSync(MODULES_DIR).filter((d) =>
      statSync(join(MODULES_DIR, d)).isDirectory(),
    );
    const modules = moduleDirsNow().map((d) => relative(MODULES_DIR, d));
    expect(dirs.filter((d) => !modules.includes(d))).toEqual([]);
    expect(dirs).toEqual(
      expect.arrayContaining(["cache", "ssm-document", "deploy", "ami-import", "github-oidc"]),
    );
  });

  for (const dir of moduleDirsNow()) {
    const name = relative(ROOT, dir);
    it(`${name}: passes every structural check`, async () => {
      const modules = await loadRepoModules();
      const mod = modules.get(dir) as TfModule;
      const lookup = (d: string) => modules.get(d);
      expect([
        ...checkVariables(mod),
        ...checkModuleCalls(mod, lookup),
        ...checkReferences(mod, lookup),
        ...checkTemplateCalls(mod),
        ...checkDescriptions(mod),
        ...checkReadme(mod),
        ...(dir.startsWith(`${MODULES_DIR}/`) ? checkLayout(mod) : []),
      ]).toEqual([]);
    });
  }

  for (const [name, contract] of Object.entries(CONTRACTS)) {
    it(`${name}: keeps its contract`, async () => {
      const mod = (await loadRepoModules()).get(join(ROOT, name));
      expect(mod, `${name} does not exist (yet)`).toBeDefined();
      expect(checkContract(mod as TfModule, contract)).toEqual([]);
    });
  }
});

describe("each check fails on a fixture made to break it, saying what and where", () => {
  it("parsing: a file that is not HCL2 is named with the line", async () => {
    const file = join(FIXTURES, "bad-syntax/main.tf");
    const problems = await parseProblems([file], FIXTURES);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^bad-syntax\/main\.tf: not valid HCL2: .*bad-syntax\/main\.tf:3,.*Invalid expression/,
    );
  });

  it("npcnix: the module call never passes remote_region, which the install script needs", async () => {
    const { root, modules, lookup } = await fixture("npcnix-call-misses-remote-region");
    expect(checkModuleCalls(root, lookup)).toEqual([
      'npcnix-call-misses-remote-region/main.tf: module "instance" does not pass "remote_region", a required variable of npcnix-call-misses-remote-region/modules/instance (npcnix-call-misses-remote-region/modules/instance/variables.tf gives it no default)',
    ]);
    // The module itself is consistent: the mistake is the call's.
    const instance = modules.get(
      join(FIXTURES, "npcnix-call-misses-remote-region/modules/instance"),
    );
    expect([
      ...checkVariables(instance as TfModule),
      ...checkTemplateCalls(instance as TfModule),
    ]).toEqual([]);
  });

  it("npcnix: remote_region is declared (and validated) but nothing reads it", async () => {
    const { root } = await fixture("npcnix-remote-region-never-used");
    expect(checkVariables(root)).toEqual([
      'npcnix-remote-region-never-used/variables.tf: variable "remote_region" is declared but never used',
    ]);
  });

  it("npcnix: the install script reads remote_region, which templatefile() is not given", async () => {
    const { root } = await fixture("npcnix-script-reads-unpassed");
    expect(checkTemplateCalls(root)).toEqual([
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the template's own syntax, quoted.
      'npcnix-script-reads-unpassed/main.tf: resource "aws_instance" "this" calls templatefile("npcnix-script-reads-unpassed/install.sh.tftpl"), whose template reads ${remote_region}, but the call does not pass it',
      'npcnix-script-reads-unpassed/main.tf: resource "aws_instance" "this" calls templatefile("npcnix-script-reads-unpassed/install.sh.tftpl") passing "region", which the template never reads',
    ]);
  });

  it("variables: a use of a variable nobody declared", async () => {
    const { root } = await fixture("undeclared-variable");
    expect(checkVariables(root)).toEqual([
      'undeclared-variable/main.tf: resource "aws_instance" "this" uses var.remote_regoin, but the module declares no variable "remote_regoin"',
    ]);
  });

  it("module calls: an argument the module does not declare, and a source with no module", async () => {
    const { root, lookup } = await fixture("module-call-mistakes");
    expect(checkModuleCalls(root, lookup)).toEqual([
      'module-call-mistakes/main.tf: module "cache" passes "region", but module-call-mistakes/modules/cache declares no variable "region"',
      'module-call-mistakes/main.tf: module "hosts" has source "../modules/hosts", but no Terraform module is there',
    ]);
  });

  it("references: outputs and resources that refer to things nobody declared", async () => {
    const { root, lookup } = await fixture("dangling-references");
    expect(checkReferences(root, lookup).sort()).toEqual(
      [
        'dangling-references/main.tf: output "bucket_arn" refers to aws_s3_bucket.cache.arn, but there is no resource "aws_s3_bucket" "cache"',
        'dangling-references/main.tf: output "policy" refers to data.aws_iam_policy_document.reader.json, but there is no data "aws_iam_policy_document" "reader"',
        'dangling-references/main.tf: output "policy_arn" refers to module.cache.reader_policy_arn, but dangling-references/modules/cache has no output "reader_policy_arn"',
        'dangling-references/main.tf: output "hosts" refers to module.hosts, but there is no module "hosts"',
        'dangling-references/main.tf: resource "aws_s3_object" "marker" refers to local.prefix, but no local "prefix" is set',
      ].sort(),
    );
  });

  it("layout: a module without its files or its provider requirement", async () => {
    const { root } = await fixture("layout-incomplete");
    expect(checkLayout(root)).toEqual([
      "layout-incomplete: variables.tf is missing",
      "layout-incomplete: outputs.tf is missing",
      "layout-incomplete: versions.tf is missing",
      "layout-incomplete: no terraform { required_version = … } is declared",
      'layout-incomplete: uses aws_ resources but required_providers does not declare aws = { source = "hashicorp/aws" }',
    ]);
    expect(checkReadme(root)).toEqual(["layout-incomplete/README.md is missing"]);
  });

  it("descriptions: a variable and an output without one", async () => {
    const { root } = await fixture("descriptions-missing");
    expect(checkDescriptions(root)).toEqual([
      'descriptions-missing/main.tf: variable "bucket_name" has no description',
      'descriptions-missing/main.tf: output "bucket_arn" has no description',
    ]);
  });

  it("README: inputs and outputs missing, extra, or with the wrong type or default", async () => {
    const { root } = await fixture("readme-mismatch");
    const file = "readme-mismatch/README.md";
    expect(checkReadme(root).sort()).toEqual(
      [
        `${file}: ## Inputs does not list the variable "tags"`,
        `${file}: ## Inputs lists "region", which is not a variable of readme-mismatch`,
        `${file}: ## Inputs gives "bucket_name" the default "cache", but it is required (no default in readme-mismatch/main.tf)`,
        `${file}: ## Inputs gives "versioning" the type string, but readme-mismatch/main.tf declares bool`,
        `${file}: ## Inputs gives "prefix" the default "nix", but readme-mismatch/main.tf declares ""`,
        `${file}: ## Outputs does not list the output "store_url"`,
        `${file}: ## Outputs lists "bucket_name", which is not an output of readme-mismatch`,
        `${file}: ## Outputs gives "bucket_arn" no description`,
      ].sort(),
    );
  });

  it("contract: a cache module that drifted from its contract", async () => {
    const { root } = await fixture("contract-drift");
    const contract = CONTRACTS["terraform/modules/cache"] as ModuleContract;
    expect(checkContract(root, contract)).toEqual([
      'contract-drift/main.tf: variable "bucket_name" defaults to "nixship", the contract says null',
      'contract-drift: the contract\'s variable "bucket_prefix" is not declared',
      'contract-drift/main.tf: variable "versioning" has type string, the contract says bool',
      'contract-drift/main.tf: variable "versioning" defaults to "false", the contract says false',
      'contract-drift: the contract\'s output "agent_policy_arn" is missing',
      'contract-drift: the contract\'s output "reader_policy_arn" is missing',
    ]);
    // A required variable the contract gives a default (the other way round) is named too.
    const strict: ModuleContract = {
      ...contract,
      variables: { ...contract.variables, bucket_name: { type: "string", required: true } },
    };
    expect(checkContract(root, strict)).toContain(
      'contract-drift/main.tf: variable "bucket_name" has a default, the contract says it is required',
    );
  });
});
