// The Nix → Terraform bridge, through the built CLI with the real Nix:
// `nixship terraform vars` prints variables whose types are those the deploy module and
// examples/aws declare (parsed from their .tf files), and `nixship fleet from-terraform` turns
// `terraform output -json` of examples/aws into a fleet file the fleet loader and the schema
// accept, with the instances' IDs, tags and addresses; bad input exits 2 naming the JSON path.
// `terraform vars --image` builds a stand-in laid out as NixOS's amazonImage output (the disk
// image, nix-support/image-info.json) and prints what the ami-import module takes.

import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "@cdktf/hcl2json";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { nixship, run } from "../support/cli.js";
import { AWS_TERRAFORM_OUTPUT, HOSTS_OUTPUT_TYPE } from "./support/aws-terraform-output.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { fleetSchemaProblems } from "./support/json-schema.js";
import {
  parseTypeExpression,
  parseTypeJson,
  type TfType,
  typeProblems,
} from "./support/terraform-types.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
/** The root modules `nixship terraform vars` feeds, with the variables it prints. */
const VARIABLE_FILES = ["terraform/modules/deploy/variables.tf", "examples/aws/variables.tf"];
const AMI_IMPORT_VARIABLES = "terraform/modules/ami-import/variables.tf";
/** `terraform vars --image` variable → the ami-import module's variable it is for. */
const IMAGE_VARIABLES = {
  image_path: "image_path",
  image_format: "image_format",
  image_boot_mode: "boot_mode",
  image_architecture: "architecture",
} as const;
const NIX_SYSTEM = `${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux`;

/**
 * Stand-ins for NixOS image builds (plain derivations, no nixpkgs), each laid out as
 * amazon-image.nix lays out its output: the disk image and nix-support/image-info.json naming
 * it ("$out" is the shell's). `lying` names a file it does not make.
 */
const IMAGES_FLAKE = `{
  outputs = { self }:
    let
      system = "${NIX_SYSTEM}";
      image = name: file: info: derivation {
        inherit name system;
        builder = "/bin/sh";
        PATH = "/usr/bin:/bin";
        args = [ "-c" ''
          mkdir -p $out/nix-support
          \${if file == null then "" else "echo 'stand-in disk image \${name}' > $out/\${file}"}
          cat > $out/nix-support/image-info.json <<EOF
          \${builtins.toJSON info}
          EOF
        '' ];
      };
      vhd = "nixos-amazon-image-25.05-${NIX_SYSTEM}.vhd";
    in {
      nixosConfigurations.web1.config.system.build.amazonImage = image "stand-in-amazon-image" vhd {
        label = "25.05.20250101.0000000";
        boot_mode = "legacy-bios";
        inherit system;
        logical_bytes = "4294967296";
        file = "$out/\${vhd}";
        disks.root = { logical_bytes = "4294967296"; file = "$out/\${vhd}"; };
      };
      packages.\${system} = {
        raw-image = image "stand-in-raw-image" "nixos.img" {
          label = "25.05"; boot_mode = "uefi"; system = "aarch64-linux"; file = "$out/nixos.img";
        };
        lying = image "stand-in-lying-image" null {
          label = "25.05"; boot_mode = "uefi"; inherit system; file = "$out/nixos.vhd";
        };
      };
    };
}
`;
const OUTPUTS_FILE = "examples/aws/outputs.tf";

let work: string;
let fleetFile: string;
let cachePub: string;

/** hcl2json's view of a .tf file: blocks by type, then by label, each a list of bodies. */
type Hcl = Record<string, Record<string, Record<string, unknown>[]>>;

async function parseTf(file: string): Promise<Hcl> {
  return (await parse(file, await readFile(join(REPO, file), "utf8"))) as Hcl;
}

/** The declared type of each variable of a variables.tf. */
async function declaredVariables(file: string): Promise<Map<string, TfType>> {
  const variables = (await parseTf(file)).variable ?? {};
  return new Map(
    Object.entries(variables).map(([name, [body]]) => {
      const type = body?.type;
      if (typeof type !== "string") throw new Error(`${file}: variable ${name} declares no type`);
      return [name, parseTypeExpression(type)];
    }),
  );
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-terraform-"));
  await run("ln", ["-s", EXAMPLES_DIR, join(work, "examples")]);
  await mkdir(join(work, "images"));
  await writeFile(join(work, "images", "flake.nix"), IMAGES_FLAKE);
  cachePub = (
    await nixship(["key", "generate", "--name", "tf-cache-1", "--out", join(work, "cache.sec")])
  ).stdout.trim();
  fleetFile = join(work, "nixship.json");
  await writeFile(
    fleetFile,
    JSON.stringify({
      cache: { url: `file://${work}/cache`, publicKeys: [cachePub] },
      hosts: {
        a: { tags: ["web"], address: "192.0.2.1", system: "path:./examples#web-v1" },
        b: { tags: ["web"], address: "192.0.2.2", system: "path:./examples#web-v2" },
        c: { tags: ["db"], address: "192.0.2.3", system: "path:./examples#web-v1" },
      },
    }),
  );
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("the type checker the tests rely on", () => {
  it("parses type expressions and JSON types, and catches what does not conform", () => {
    const type = parseTypeExpression(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of a type, ${...} included.
      "${map(object({ id = string, tags = map(string), n = optional(number, 3) }))}",
    );
    expect(typeProblems(type, { h: { id: "i-1", tags: { Role: "web" } } })).toEqual([]);
    expect(typeProblems(type, { h: { id: 1, tags: {}, extra: true } })).toEqual([
      'value["h"].id: expected a string, got 1',
      'value["h"].extra: not declared by the type',
    ]);
    expect(typeProblems(parseTypeExpression("map(string)"), { a: "x", b: null })).toEqual([
      'value["b"]: expected a string, got null',
    ]);
    expect(parseTypeJson(["map", ["object", { a: "string" }]])).toEqual(
      parseTypeExpression("map(object({a = string}))"),
    );
  });
});

describe("nixship terraform vars", () => {
  it("prints store_paths and cache_url, of the types the Terraform modules declare", async () => {
    const r = await nixship(["terraform", "vars", "--fleet", fleetFile]);
    expect(r.code, r.stderr).toBe(0);
    const vars = JSON.parse(r.stdout) as { store_paths: Record<string, string>; cache_url: string };
    // Nothing else on stdout: exactly the document, with a final newline.
    expect(r.stdout).toBe(`${JSON.stringify(vars, null, 2)}\n`);
    expect(Object.keys(vars)).toEqual(["store_paths", "cache_url"]);
    expect(vars.cache_url).toBe(`file://${work}/cache`);
    expect(Object.keys(vars.store_paths)).toEqual(["a", "b", "c"]);
    for (const [host, version] of [
      ["a", "web-v1"],
      ["b", "web-v2"],
      ["c", "web-v1"],
    ] as const) {
      const path = vars.store_paths[host] as string;
      expect(path).toMatch(/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-example-web-system-/);
      expect((await readFile(join(path, "nixos-version"), "utf8")).trim()).toBe(version);
    }
    // The build command's code path: the same systems.
    const built = await nixship(["build", "--fleet", fleetFile, "--json"]);
    expect(JSON.parse(built.stdout).hosts).toEqual(vars.store_paths);

    for (const file of VARIABLE_FILES) {
      const declared = await declaredVariables(file);
      for (const [name, value] of Object.entries(vars)) {
        const type = declared.get(name);
        expect(type, `${file} declares variable ${name}`).toBeDefined();
        expect(typeProblems(type as TfType, value, name), file).toEqual([]);
      }
    }
  });

  it("selects hosts with --on, and gives an empty cache_url for a fleet without a cache", async () => {
    const noCache = join(work, "no-cache.json");
    const doc = JSON.parse(await readFile(fleetFile, "utf8"));
    await writeFile(noCache, JSON.stringify({ hosts: doc.hosts }));
    const r = await nixship(["terraform", "vars", "--fleet", noCache, "--on", "@web"]);
    expect(r.code, r.stderr).toBe(0);
    const vars = JSON.parse(r.stdout);
    expect(Object.keys(vars.store_paths)).toEqual(["a", "b"]);
    expect(vars.cache_url).toBe("");
    expect(typeProblems(parseTypeExpression("string"), vars.cache_url)).toEqual([]);
  });

  it("--format external prints a flat object of strings, as Terraform's external data source needs", async () => {
    const tfvars = JSON.parse(
      (await nixship(["terraform", "vars", "--fleet", fleetFile, "--on", "a,b"])).stdout,
    );
    const r = await nixship([
      "terraform",
      "vars",
      "--fleet",
      fleetFile,
      "--on",
      "a,b",
      "--format",
      "external",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(Object.keys(result)).toEqual(["store_paths_json", "cache_url"]);
    expect(typeProblems(parseTypeExpression("map(string)"), result)).toEqual([]);
    expect(JSON.parse(result.store_paths_json)).toEqual(tfvars.store_paths);
    expect(result.cache_url).toBe(tfvars.cache_url);
  });

  it("--out writes the var file atomically and prints nothing on stdout", async () => {
    const dir = join(work, "out");
    await mkdir(dir);
    const out = join(dir, "nixship.auto.tfvars.json");
    await writeFile(out, "old content");
    const r = await nixship(["terraform", "vars", "--fleet", fleetFile, "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("nixship.auto.tfvars.json");
    const printed = (await nixship(["terraform", "vars", "--fleet", fleetFile])).stdout;
    expect(await readFile(out, "utf8")).toBe(printed);
    expect(await readdir(dir)).toEqual(["nixship.auto.tfvars.json"]);
  });

  it("--out in a directory that does not exist fails before anything is built (exit 2)", async () => {
    const out = join(work, "no-such-dir", "nixship.auto.tfvars.json");
    const r = await nixship(["terraform", "vars", "--fleet", fleetFile, "--out", out]);
    expect(r.code).toBe(2);
    // Its errors go to stderr alone, as a program reading its stdout (Terraform) needs.
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`error: cannot write ${out}: no such file or directory (ENOENT)`);
    // Nothing was built: the build would have said so on stderr.
    expect(r.stderr).not.toMatch(/built|building/);
  });

  it("--image builds a NixOS image in the same run and prints what the ami-import module takes", async () => {
    const installable = "path:./images#nixosConfigurations.web1.config.system.build.amazonImage";
    const r = await nixship([
      "terraform",
      "vars",
      "--fleet",
      fleetFile,
      "--on",
      "a,b",
      "--image",
      installable,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("built 2 hosts, 2 systems, the image");
    const vars = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(r.stdout).toBe(`${JSON.stringify(vars, null, 2)}\n`);
    expect(Object.keys(vars)).toEqual([
      "store_paths",
      "cache_url",
      ...Object.keys(IMAGE_VARIABLES),
    ]);
    const plain = JSON.parse(
      (await nixship(["terraform", "vars", "--fleet", fleetFile, "--on", "a,b"])).stdout,
    );
    expect(vars.store_paths).toEqual(plain.store_paths);
    expect(vars).toMatchObject({
      image_format: "VHD",
      image_boot_mode: "legacy-bios",
      image_architecture: process.arch === "arm64" ? "arm64" : "x86_64",
    });
    const path = vars.image_path as string;
    expect(path).toMatch(
      /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-stand-in-amazon-image\/nixos-amazon-image-25\.05-[a-z0-9_]+-linux\.vhd$/,
    );
    expect(await readFile(path, "utf8")).toBe("stand-in disk image stand-in-amazon-image\n");
    await expectAmiImportAccepts(vars);
  });

  it("--image takes an image already built, as a store path, and --format external carries it as strings", async () => {
    const built = JSON.parse(
      (await run("nix", ["build", "--no-link", "--json", `path:${join(work, "images")}#raw-image`]))
        .stdout,
    ) as { outputs: { out: string } }[];
    const out = built[0]?.outputs.out as string;
    const r = await nixship([
      "terraform",
      "vars",
      "--fleet",
      fleetFile,
      "--on",
      "c",
      "--image",
      out,
      "--format",
      "external",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(typeProblems(parseTypeExpression("map(string)"), result)).toEqual([]);
    expect(result).toEqual({
      store_paths_json: expect.any(String),
      cache_url: `file://${work}/cache`,
      image_path: `${out}/nixos.img`,
      image_format: "RAW",
      image_boot_mode: "uefi",
      image_architecture: "arm64",
    });
    await expectAmiImportAccepts(result);
  });

  it.each([
    [
      "an output that is no image",
      "path:./examples#web-v1",
      2,
      /path:\.\/examples#web-v1 built \/nix\/store\/\S+-example-web-system-v1, which has no nix-support\/image-info\.json: it is not a disk image build/,
    ],
    [
      "an image whose file is missing",
      "path:./images#lying",
      1,
      /image-info\.json names the disk image \/nix\/store\/\S+-stand-in-lying-image\/nixos\.vhd, which is not there \(ENOENT\)/,
    ],
    [
      "an output that does not exist",
      "path:./images#nope",
      2,
      /--image: the flake has no output "path:\.\/images#nope"/,
    ],
  ])("--image refuses %s, with nothing on stdout", async (_, image, code, message) => {
    const r = await nixship([
      "terraform",
      "vars",
      "--fleet",
      fleetFile,
      "--on",
      "a",
      "--image",
      image,
    ]);
    expect(r.code, r.stderr).toBe(code);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
  });

  it.each([
    [["--image", "web"], /--image must give a flake installable or a store path, got 'web'/],
    [["--out", "vars.tfvars"], /--out must name a \.json file, got 'vars\.tfvars'/],
    [["--format", "hcl"], /--format must be one of tfvars, external, got 'hcl'/],
    [["--format", "external", "--out", "v.json"], /external format is read by Terraform/],
    [["--on", "@nope"], /selector term "@nope" matches no tag/],
    [["extra"], /unexpected argument 'extra'/],
  ])("exits 2 on bad usage: %j", async (args, message) => {
    const r = await nixship(["terraform", "vars", "--fleet", fleetFile, ...args]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
  });

  it("exits 2 when a system's flake output does not exist, with nothing on stdout", async () => {
    const broken = join(work, "broken.json");
    await writeFile(
      broken,
      JSON.stringify({ hosts: { a: { address: "192.0.2.1", system: "path:./examples#no-such" } } }),
    );
    const r = await nixship(["terraform", "vars", "--fleet", broken]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('hosts.a.system: the flake has no output "path:./examples#no-such"');
  });
});

/** Each image variable is one the ami-import module declares, a string its validation allows. */
async function expectAmiImportAccepts(vars: Record<string, unknown>): Promise<void> {
  const variables = (await parseTf(AMI_IMPORT_VARIABLES)).variable ?? {};
  for (const [name, moduleName] of Object.entries(IMAGE_VARIABLES)) {
    const body = variables[moduleName]?.[0];
    expect(body, `ami-import declares ${moduleName}`).toBeDefined();
    expect(typeProblems(parseTypeExpression(body?.type as string), vars[name], name)).toEqual([]);
    for (const { condition } of (body?.validation ?? []) as { condition: string }[]) {
      const allowed = /contains\((\[[^\]]*\]), var\.\w+\)/.exec(condition)?.[1];
      expect(allowed, `${moduleName}: ${condition}`).toBeDefined();
      expect(JSON.parse(allowed as string), moduleName).toContain(vars[name]);
    }
  }
}

describe("nixship fleet from-terraform", () => {
  let outputsFile: string;
  let baseDir: string;
  let baseFile: string;

  beforeAll(async () => {
    outputsFile = join(work, "tf-outputs.json");
    await writeFile(outputsFile, JSON.stringify(AWS_TERRAFORM_OUTPUT, null, 2));
    baseDir = join(work, "infra");
    await mkdir(baseDir);
    await run("ln", ["-s", EXAMPLES_DIR, join(baseDir, "examples")]);
    await writeFile(join(baseDir, "known_hosts"), "");
    baseFile = join(baseDir, "nixship.base.json");
    await writeFile(
      baseFile,
      JSON.stringify({
        cache: { url: "file:///placeholder", publicKeys: [cachePub] },
        ssh: { knownHosts: "./known_hosts" },
        policy: { canary: 1, health: { http: [{ url: "http://{address}/health" }] } },
        hosts: {
          web1: { address: "192.0.2.1", system: "path:./examples#web-v1" },
          web2: { address: "192.0.2.2", system: "path:./examples#web-v2" },
        },
      }),
    );
  });

  it("the fixture is what examples/aws declares: exactly its outputs, each of its type", async () => {
    const declared = Object.keys((await parseTf(OUTPUTS_FILE)).output ?? {});
    expect(Object.keys(AWS_TERRAFORM_OUTPUT).sort()).toEqual(declared.sort());
    const contract: Record<string, string> = {
      cache_url: "string",
      region: "string",
      ssm_document_name: "string",
      hosts: HOSTS_OUTPUT_TYPE,
    };
    for (const [name, output] of Object.entries(AWS_TERRAFORM_OUTPUT)) {
      expect(typeProblems(parseTypeJson(output.type), output.value, name)).toEqual([]);
      expect(typeProblems(parseTypeExpression(contract[name] as string), output.value)).toEqual([]);
    }
  });

  it("round-trips the outputs into a fleet the loader and the schema accept", async () => {
    const out = join(work, "deploy", "nixship.json");
    await mkdir(join(work, "deploy"));
    const r = await nixship([
      "fleet",
      "from-terraform",
      outputsFile,
      "--base",
      baseFile,
      "--out",
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    const doc = JSON.parse(await readFile(out, "utf8"));
    expect(fleetSchemaProblems(doc)).toEqual([]);
    const fleet = await loadFleet(out);
    const tf = AWS_TERRAFORM_OUTPUT.hosts.value;
    expect(fleet.hosts.map((h) => h.name)).toEqual(Object.keys(tf));
    expect(fleet.hosts.map((h) => (h.delivery === "ssm" ? h.instanceId : h.delivery))).toEqual([
      tf.web1.instance_id,
      tf.web2.instance_id,
    ]);
    // Role=web and Role=Web both become the fleet tag "web"; web2 has no public address.
    expect(fleet.hosts.map((h) => h.tags)).toEqual([["web"], ["web"]]);
    expect(fleet.hosts.map((h) => h.address)).toEqual([tf.web1.public_ip, tf.web2.private_ip]);
    expect(fleet.cache?.url).toBe(AWS_TERRAFORM_OUTPUT.cache_url.value);
    expect(fleet.cache?.substituter).toBe(AWS_TERRAFORM_OUTPUT.cache_url.value);
    expect(fleet.ssm).toMatchObject({
      documentName: AWS_TERRAFORM_OUTPUT.ssm_document_name.value,
      region: AWS_TERRAFORM_OUTPUT.region.value,
    });
    // The base's relative paths now name the same files from the output's directory.
    expect(doc.ssh.knownHosts).toBe("../infra/known_hosts");
    expect(fleet.ssh.knownHosts).toBe(join(baseDir, "known_hosts"));
    expect(doc.hosts.web1.system).toBe("path:../infra/examples#web-v1");
    const built = await nixship(["build", "--fleet", out, "--json"]);
    const fromBase = await nixship(["build", "--fleet", baseFile, "--json"]);
    expect(built.code, built.stderr).toBe(0);
    expect(JSON.parse(built.stdout).hosts).toEqual(JSON.parse(fromBase.stdout).hosts);
  });

  it("reads stdin for -, fills in a --system template, takes a key file, adds --tag-keys tags", async () => {
    const cachePubFile = join(work, "cache.pub");
    await writeFile(cachePubFile, `${cachePub}\n`);
    const r = await run(
      process.execPath,
      [
        join(REPO, "dist/cli/bin.js"),
        "fleet",
        "from-terraform",
        "-",
        "--via",
        "ssh",
        "--system",
        ".#nixosConfigurations.{name}.config.system.build.toplevel",
        "--cache-key",
        cachePubFile,
        "--tag-keys",
        "Env",
      ],
      { input: Buffer.from(JSON.stringify(AWS_TERRAFORM_OUTPUT)) },
    );
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(fleetSchemaProblems(doc)).toEqual([]);
    expect(doc.hosts).toEqual({
      web1: {
        tags: ["web", "production"],
        address: "3.250.17.21",
        delivery: "ssh",
        system: ".#nixosConfigurations.web1.config.system.build.toplevel",
      },
      web2: {
        tags: ["web", "staging"],
        address: "10.42.1.12",
        delivery: "ssh",
        system: ".#nixosConfigurations.web2.config.system.build.toplevel",
      },
    });
    expect(doc.cache).toEqual({
      url: AWS_TERRAFORM_OUTPUT.cache_url.value,
      publicKeys: [cachePub],
    });
  });

  /** The fixture with `change` applied to a deep copy. */
  function fixture(change: (doc: typeof AWS_TERRAFORM_OUTPUT) => void): string {
    const doc = structuredClone(AWS_TERRAFORM_OUTPUT);
    change(doc);
    return JSON.stringify(doc);
  }

  it.each([
    [
      "a missing output",
      fixture((d) => {
        delete (d as Partial<typeof d>).ssm_document_name;
      }),
      /: ssm_document_name: is missing/,
    ],
    [
      "a host without instance_id, for ssm",
      fixture((d) => {
        d.hosts.value.web2.instance_id = "";
      }),
      /: hosts\.value\.web2\.instance_id: is needed for an ssm host/,
    ],
    [
      "a bad tag value",
      fixture((d) => {
        d.hosts.value.web1.tags.Role = "web servers";
      }),
      /: hosts\.value\.web1\.tags\.Role: "web servers" is not a fleet tag/,
    ],
    ["a file that is not JSON", '{"cache_url": {"value": "s3://x"},', /:1:\d+: invalid JSON/],
  ])("exits 2 on %s, naming where", async (_, text, message) => {
    const file = join(work, "bad-outputs.json");
    await writeFile(file, text);
    const r = await nixship(["fleet", "from-terraform", file, "--base", baseFile]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^error: .*bad-outputs\.json/);
    expect(r.stderr).toMatch(message);
  });

  it("says which hosts of the file --out replaces neither the base nor Terraform names, gone now", async () => {
    const out = join(work, "regenerated.json");
    const first = await nixship([
      "fleet",
      "from-terraform",
      outputsFile,
      "--base",
      baseFile,
      "--out",
      out,
    ]);
    expect(first.code, first.stderr).toBe(0);
    // Someone added a host to the generated file, not to the base.
    const doc = JSON.parse(await readFile(out, "utf8")) as { hosts: Record<string, unknown> };
    doc.hosts.db1 = { address: "10.0.0.9", delivery: "ssh", system: ".#db1" };
    await writeFile(out, JSON.stringify(doc));
    const again = await nixship([
      "fleet",
      "from-terraform",
      outputsFile,
      "--base",
      baseFile,
      "--out",
      out,
      "--json",
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ dropped: ["db1"] });
    expect(again.stderr).toContain(
      `note: ${out} named hosts that neither the base fleet nor Terraform does, now gone from it: db1 (add them to the base to keep them)`,
    );
  });

  it("names a --system template's flake from the directory --out writes into", async () => {
    await mkdir(join(work, "elsewhere"), { recursive: true });
    const r = await run(
      process.execPath,
      [
        join(REPO, "dist/cli/bin.js"),
        ...["fleet", "from-terraform", outputsFile, "--system", ".#nixosConfigurations.{name}"],
        ...["--cache-key", cachePub, "--out", "elsewhere/nixship.json"],
      ],
      { cwd: work },
    );
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(await readFile(join(work, "elsewhere", "nixship.json"), "utf8"));
    // The flake here, as the fleet file in elsewhere/ names it.
    expect(doc.hosts.web1.system).toBe("./..#nixosConfigurations.web1");
  });

  it("refuses an --out that is a file it reads, or that holds no fleet file, and replaces nothing", async () => {
    const notes = join(work, "notes.txt");
    await writeFile(notes, "my notes\n");
    const noHosts = join(work, "other.json");
    await writeFile(noHosts, '{"a": 1}\n');
    const baseCopy = join(work, "base-copy.json");
    await writeFile(baseCopy, await readFile(baseFile, "utf8"));
    const baseLink = join(work, "base-link.json");
    await symlink(baseCopy, baseLink);
    const outputsCopy = join(work, "outputs-copy.json");
    await writeFile(outputsCopy, await readFile(outputsFile, "utf8"));
    const cases: [string[], string, RegExp][] = [
      [["--out", outputsCopy], outputsCopy, /is the file given as OUTPUT_JSON/],
      [["--out", baseLink], baseCopy, /is the file given as --base/],
      [["--out", notes], notes, /holds text that is not JSON, no fleet file: it is not replaced/],
      [["--out", noHosts], noHosts, /holds JSON without a "hosts" object, no fleet file/],
    ];
    for (const [flags, file, message] of cases) {
      const before = await readFile(file, "utf8");
      const r = await nixship([
        "fleet",
        "from-terraform",
        flags[1] === outputsCopy ? outputsCopy : outputsFile,
        "--base",
        flags[1] === baseLink ? baseLink : baseFile,
        ...flags,
      ]);
      expect(r.code, flags.join(" ")).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(await readFile(file, "utf8")).toBe(before);
    }
  });

  it("keeps what the base says of a host that Terraform does not know: its tags, ssh user and sudo", async () => {
    const base = join(baseDir, "nixship.ssh-base.json");
    await writeFile(
      base,
      JSON.stringify({
        cache: { url: "file:///placeholder", publicKeys: [cachePub] },
        ssh: { knownHosts: "./known_hosts", user: "deploy" },
        policies: { "@canary": { canary: 1 } },
        hosts: {
          web1: {
            delivery: "ssh",
            address: "192.0.2.1",
            system: "path:./examples#web-v1",
            tags: ["canary", "eu"],
            sshUser: "ops",
            sudo: true,
            sshHost: "web1.internal",
          },
          web2: { delivery: "ssh", address: "192.0.2.2", system: "path:./examples#web-v2" },
        },
      }),
    );
    const r = await nixship([
      "fleet",
      "from-terraform",
      outputsFile,
      "--via",
      "ssh",
      "--base",
      base,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { hosts: Record<string, Record<string, unknown>> };
    expect(doc.hosts.web1).toMatchObject({
      tags: ["web", "canary", "eu"],
      sshUser: "ops",
      sudo: true,
    });
    // Reached at Terraform's address, which its known_hosts line names, not the base's alias.
    expect(doc.hosts.web1).not.toHaveProperty("sshHost");
    expect(doc.hosts.web2).not.toHaveProperty("sshUser");
  });

  it("refuses two hosts on one instance, as the fleet's own rules do, and writes nothing", async () => {
    const file = join(work, "one-instance.json");
    await writeFile(
      file,
      fixture((d) => {
        d.hosts.value.web2.instance_id = d.hosts.value.web1.instance_id;
      }),
    );
    const out = join(work, "one-instance-fleet.json");
    const r = await nixship(["fleet", "from-terraform", file, "--base", baseFile, "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error: the fleet made from Terraform's outputs: hosts\.web2\.instanceId: i-\w+ is host web1's instance too: one instance is one host/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it("refuses ssm hosts a cache under a key prefix, which their Nix cannot substitute from, naming the ways out", async () => {
    const file = join(work, "prefixed.json");
    await writeFile(
      file,
      fixture((d) => {
        d.cache_url.value = "s3://nixship-store/fleet?region=eu-west-1";
      }),
    );
    const r = await nixship(["fleet", "from-terraform", file, "--base", baseFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      "cache.substituter: names a key prefix (fleet) in its bucket, which Nix's S3 store does not read",
    );
    expect(r.stdout).toBe("");
  });

  it("refuses outputs past 64 MiB, on stdin and in a file, unread past that, and writes nothing", async () => {
    const out = join(work, "never-written.json");
    const huge = Buffer.alloc(65 * 1024 * 1024, 0x20);
    const piped = await run(
      process.execPath,
      [
        join(REPO, "dist/cli/bin.js"),
        "fleet",
        "from-terraform",
        "-",
        "--base",
        baseFile,
        "--out",
        out,
      ],
      { input: huge },
    );
    expect(piped.code).toBe(2);
    expect(piped.stderr).toContain(
      "error: the Terraform outputs on stdin is more than 64 MiB, the most that is read of it",
    );
    const file = join(work, "huge-outputs.json");
    await writeFile(file, huge);
    const read = await nixship(["fleet", "from-terraform", file, "--base", baseFile, "--out", out]);
    expect(read.code).toBe(2);
    expect(read.stderr).toContain(`the Terraform outputs ${file} is more than 64 MiB`);
    expect(existsSync(out)).toBe(false);
  });

  it("names terraform output -json for outputs that are not JSON, and --cache-key for a key it cannot read", async () => {
    const hcl = join(work, "outputs.txt");
    await writeFile(hcl, 'cache_url = "s3://bucket"\n');
    const r = await nixship(["fleet", "from-terraform", hcl, "--base", baseFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("hint: give what 'terraform output -json' prints");
    const key = await nixship([
      "fleet",
      "from-terraform",
      outputsFile,
      "--system",
      ".#{name}",
      "--cache-key",
      join(work, "no-such.pub"),
    ]);
    expect(key.code).toBe(2);
    expect(key.stderr).toContain(`error: --cache-key ${join(work, "no-such.pub")}: no such file`);
  });

  it.each([
    [[], /give --base FLEET .* or --system TEMPLATE/],
    [["--system", ".#{host}"], /--system fills in only \{name\}, not \{host\}/],
    [["--system", "web"], /--system must give a flake installable or a store path/],
    [["--system", ".#{name}"], /needs the public keys its hosts trust: give --cache-key/],
    [["--base", "BASE", "--via", "agent"], /agent hosts follow signed releases/],
    [["--base", "BASE", "--via", "pigeon"], /--via must be one of ssh, ssm, agent/],
    [["--base", "BASE", "--tag-keys", "Env,"], /--tag-keys takes tag keys separated by commas/],
  ])("exits 2 on bad usage: %j", async (args, message) => {
    const r = await nixship([
      "fleet",
      "from-terraform",
      outputsFile,
      ...args.map((a) => (a === "BASE" ? baseFile : a)),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

describe("help", () => {
  it.each([
    [["terraform", "vars"], /nixship terraform vars --on @web --out nixship\.auto\.tfvars\.json/],
    [["fleet", "from-terraform"], /nixship fleet from-terraform tf-outputs\.json --base/],
  ])("%j --help explains usage with an example", async (words, example) => {
    const top = await nixship(["--help"]);
    expect(top.stdout).toContain(words.join(" "));
    const r = await nixship([...words, "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: nixship ${words.join(" ")} `));
    expect(r.stdout).toMatch(example);
    expect(r.stdout).toMatch(/Exit codes: 0 .*, 2 bad usage or input/s);
  });
});
