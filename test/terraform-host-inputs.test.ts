// The host module's inputs: the agent's inputs are needed only when agent_enabled, service
// ports open only when asked, AMIs looked up from the owners given, and SSH: authorized keys
// validated as OpenSSH public key lines, a host key Terraform may generate (its public half an
// output), and a host without the agent publishing its own key to the store with exactly one
// more permission. Evaluated from the module's own HCL as Terraform would: each agent input's
// validation accepts null, the aws_instance's precondition holds for an ssh/ssm host with none
// of them and fails for an agent host missing any; a host without the agent, keys or a store
// gets no user-data, and with keys it gets the SSH part only, nothing of the agent. A store
// URL with a key prefix (the cache module's, with its prefix) is accepted: an agent host's
// user-data then fetches the nixship package from under the prefix itself (fetch.sh.tftpl, run
// in terraform-host-prefixed-store.test.ts), which the cache module's agent policy allows and
// nothing more; a host without the agent publishes its key under the prefix.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runOk } from "../support/cli.js";
import { evaluateValue, type HclValue } from "./support/hcl-expr.js";
import { evaluate as iamDecision, validatePolicy } from "./support/iam-policy.js";
import { blocks, loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver, renderPolicyDocument } from "./support/terraform-render.js";
import { renderTemplate, type TemplateValue } from "./support/tftpl.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HOST_DIR = join(ROOT, "terraform", "modules", "host");
const CACHE_DIR = join(ROOT, "terraform", "modules", "cache");
const AGENT_INPUTS = ["nixship_package", "store_url", "cache_public_keys", "release_public_keys"];
const KEY = "cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I=";
const GIVEN: Record<string, HclValue> = {
  nixship_package: "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixship-0.1.0",
  store_url: "s3://fleet-cache?region=eu-west-1",
  cache_public_keys: [KEY],
  release_public_keys: [KEY.replace("cache-1", "release-1")],
};
const REQUIRED = { name: "web1", subnet_id: "subnet-1", vpc_id: "vpc-1" };

/** What Terraform knows of the module's data sources and of a generated key. */
const KNOWN: Record<string, HclValue> = {
  "data.aws_partition.current": { partition: "aws", dns_suffix: "amazonaws.com" },
};

type Body = Record<string, unknown>;
let mod: TfModule;
let cacheModule: TfModule;
let work: string;
/** Public key lines ssh-keygen made, by type. */
const keys: Record<string, string> = {};
let generated: { private_key_openssh: string; public_key_openssh: string };

/** The first block at `path` (hcl2json nests labelled blocks as objects of lists). */
function blockAt(path: readonly string[]): Body {
  for (const file of mod.files) {
    let node: unknown = file.body;
    for (const key of path) node = blocks((node as Body | undefined)?.[key])[0];
    if (node !== undefined) return node as Body;
  }
  throw new Error(`no ${path.join(".")} in ${HOST_DIR}`);
}

const resolver = (vars: Record<string, HclValue>, known: Record<string, HclValue> = {}) =>
  moduleResolver(mod, { vars: { ...REQUIRED, ...vars }, known: { ...KNOWN, ...known } });

const evaluate = (expression: unknown, vars: Record<string, HclValue>) =>
  evaluateValue(expression, resolver(vars));

/** A local of the module for these inputs (and a generated key, as Terraform would know it). */
const localValue = (name: string, vars: Record<string, HclValue>) =>
  resolver(vars, { "tls_private_key.ssh_host": [generated] })(["local", name], `local.${name}`);

beforeAll(async () => {
  mod = await loadModule(HOST_DIR, ROOT);
  cacheModule = await loadModule(CACHE_DIR, ROOT);
  work = await mkdtemp(join(tmpdir(), "nixship-host-inputs-"));
  for (const [type, bits] of [
    ["ed25519", "256"],
    ["ecdsa", "256"],
    ["ecdsa", "521"],
    ["rsa", "2048"],
  ] as const) {
    const file = join(work, `${type}-${bits}`);
    await runOk("ssh-keygen", ["-q", "-t", type, "-b", bits, "-N", "", "-C", "", "-f", file]);
    keys[`${type}-${bits}`] = (await readFile(`${file}.pub`, "utf8")).trim();
  }
  // tls_private_key's two attributes: the OpenSSH private key and "TYPE BASE64\n".
  generated = {
    private_key_openssh: await readFile(join(work, "ed25519-256"), "utf8"),
    public_key_openssh: `${keys["ed25519-256"]}\n`,
  };
});

afterAll(() => rm(work, { recursive: true, force: true }));

describe("the host module's agent inputs", () => {
  it("have no value by default, and their validations accept null and good values, not bad ones", async () => {
    for (const name of AGENT_INPUTS) {
      expect(mod.variables.get(name)?.required, name).toBe(false);
      expect(mod.variables.get(name)?.default, name).toBeNull();
      const condition = blockAt(["variable", name, "validation"]).condition;
      expect(await evaluate(condition, { [name]: null }), `${name} = null`).toBe(true);
      expect(await evaluate(condition, { [name]: GIVEN[name] as HclValue }), name).toBe(true);
      const bad = Array.isArray(GIVEN[name]) ? ["not a key"] : "not a store path or URL";
      expect(await evaluate(condition, { [name]: bad }), `${name} = bad`).toBe(false);
    }
  });

  it("attach SSM's managed policy unless ssm_enabled is false (a host never reached through SSM)", async () => {
    const attachment = blockAt(["resource", "aws_iam_role_policy_attachment", "ssm_core"]);
    expect(await evaluate(attachment.count, {})).toBe(1);
    expect(await evaluate(attachment.count, { ssm_enabled: false })).toBe(0);
    expect(String(attachment.policy_arn)).toContain("AmazonSSMManagedInstanceCore");
  });

  it("are needed exactly when agent_enabled: the instance's precondition says so", async () => {
    const lifecycle = blockAt(["resource", "aws_instance", "host", "lifecycle"]);
    const precondition = blocks(lifecycle.precondition)[0] as Body;
    const holds = (vars: Record<string, HclValue>) => evaluate(precondition.condition, vars);
    expect(await holds({ agent_enabled: false })).toBe(true);
    expect(await holds({ agent_enabled: true, ...GIVEN })).toBe(true);
    for (const name of AGENT_INPUTS) {
      expect(await holds({ agent_enabled: true, ...GIVEN, [name]: null }), name).toBe(false);
    }
    expect(String(precondition.error_message)).toContain("agent_enabled = false");
  });

  it("refuse ports to open with no address range to open them to (they would open nothing)", async () => {
    const lifecycle = blockAt(["resource", "aws_instance", "host", "lifecycle"]);
    const precondition = blocks(lifecycle.precondition).find((p) =>
      String((p as Body).error_message).startsWith("ingress_ports"),
    ) as Body;
    const holds = (vars: Record<string, HclValue>) => evaluate(precondition.condition, vars);
    expect(await holds({})).toBe(true);
    expect(await holds({ ingress_ports: [443] })).toBe(false);
    expect(await holds({ ingress_ports: [443], ingress_cidr_blocks: ["0.0.0.0/0"] })).toBe(true);
  });

  it("give a host without the agent, keys or a store no user-data at all", async () => {
    const instance = blockAt(["resource", "aws_instance", "host"]);
    expect(await evaluate(instance.user_data, { agent_enabled: false })).toBeNull();
    expect(await localValue("ssh_user_data_needed", { agent_enabled: false })).toBe(false);
    for (const vars of [
      { generate_ssh_host_key: true } as Record<string, HclValue>,
      { ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"] },
      { store_url: GIVEN.store_url as string },
    ]) {
      expect(await localValue("ssh_user_data_needed", { agent_enabled: false, ...vars })).toBe(
        true,
      );
    }
    // An agent host without SSH inputs: no SSH part, the agent's bootstrap alone (its agent
    // publishes the host key).
    expect(await localValue("ssh_user_data_needed", { agent_enabled: true, ...GIVEN })).toBe(false);
  });

  it("give a host without the agent but with SSH keys the SSH part only: nothing of the agent", async () => {
    // main.tf joins the agent's bootstrap only under var.agent_enabled (terraform-host-user-data
    // checks the expression); this is the SSH part with the values Terraform would pass.
    const vars = await localValue("ssh_user_data_vars", {
      agent_enabled: false,
      generate_ssh_host_key: true,
      ssh_authorized_keys: [`${keys["ecdsa-256"]} alice@example.org\n`],
      store_url: "s3://fleet-cache?region=eu-west-1",
    });
    const template = join(HOST_DIR, "ssh.sh.tftpl");
    const text = renderTemplate(
      await readFile(template, "utf8"),
      vars as Record<string, TemplateValue>,
      template,
    ).text;
    expect(text.startsWith("#!/bin/sh\n")).toBe(true);
    for (const agentWord of [
      "nixship agent",
      "agent.json",
      "systemd-run",
      "nix-store",
      "nixship_package",
    ]) {
      expect(text).not.toContain(agentWord);
    }
    expect(text).toContain(`${keys["ecdsa-256"]} alice@example.org\nNIXSHIP_VALUE`);
  });
});

describe("the host module's SSH inputs", () => {
  const validation = (name: string) => blockAt(["variable", name, "validation"]).condition;
  const accepts = async (list: string[]) =>
    evaluate(validation("ssh_authorized_keys"), { ssh_authorized_keys: list });

  it("authorized keys: none by default; OpenSSH public key lines of each type, with or without comment or final newline", async () => {
    expect(mod.variables.get("ssh_authorized_keys")?.default).toEqual([]);
    expect(await accepts([])).toBe(true);
    const lines = Object.values(keys);
    expect(lines).toHaveLength(4);
    expect(await accepts(lines)).toBe(true);
    expect(await accepts(lines.map((k, i) => `${k} admin${i}@example.org\n`))).toBe(true);
    expect(
      await accepts([
        "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIE= yubikey",
      ]),
    ).toBe(true);
  });

  it("authorized keys: refuses what is not one such line", async () => {
    const ed25519 = keys["ed25519-256"] as string;
    const base64 = ed25519.split(" ")[1] as string;
    for (const bad of [
      "",
      "ssh-ed25519",
      `from="10.0.0.0/8" ${ed25519}`,
      `${ed25519}\n${keys["rsa-2048"]}`,
      `ssh-rsa ${base64}`,
      `ssh-ed25519 ${(keys["rsa-2048"] as string).split(" ")[1]}`,
      `ssh-ed25519 ${base64}!`,
      `${ed25519} comment\r\nNIXSHIP_VALUE`,
      "-----BEGIN OPENSSH PRIVATE KEY-----",
    ]) {
      expect(await accepts([ed25519, bad]), JSON.stringify(bad)).toBe(false);
    }
  });

  it("a generated host key: off by default; on, an ED25519 tls_private_key whose public half is the output, trimmed", async () => {
    expect(mod.variables.get("generate_ssh_host_key")?.default).toBe(false);
    const key = mod.resources.get("tls_private_key.ssh_host")?.body as Body;
    expect(await evaluate(key.algorithm, {})).toBe("ED25519");
    expect(await evaluate(key.count, {})).toBe(0);
    expect(await evaluate(key.count, { generate_ssh_host_key: true })).toBe(1);
    expect(mod.requiredProviders.get("tls")?.source).toBe("hashicorp/tls");

    const output = mod.outputs.get("ssh_host_public_key")?.value;
    const withKey = resolver(
      { generate_ssh_host_key: true },
      { "tls_private_key.ssh_host": [generated] },
    );
    expect(await evaluateValue(output, withKey)).toBe(keys["ed25519-256"]);
    expect(await evaluate(output, {})).toBe("");
    const vars = (await localValue("ssh_user_data_vars", {
      generate_ssh_host_key: true,
      agent_enabled: false,
    })) as Record<string, string>;
    expect(vars.ssh_host_private_key).toBe(generated.private_key_openssh);
    expect(vars.ssh_host_public_key).toBe(keys["ed25519-256"]);
  });
});

describe("a host without the agent publishing its SSH host key", () => {
  type Vars = Record<string, string>;
  const publishing = async (
    vars: Record<string, HclValue>,
    known: Record<string, HclValue> = {},
  ) => {
    const all = (await resolver({ agent_enabled: false, ...vars }, known)(
      ["local", "ssh_user_data_vars"],
      "local.ssh_user_data_vars",
    )) as Vars;
    return [all.host_key_store, all.host_key_url, all.host_key_region];
  };

  it("to S3 (virtual-hosted, or path-style for a dotted bucket; the partition's domain) or a directory", async () => {
    expect(await publishing({ store_url: "s3://fleet-cache?region=eu-west-1" })).toEqual([
      "s3",
      "https://fleet-cache.s3.eu-west-1.amazonaws.com/status/host-keys/web1.pub",
      "eu-west-1",
    ]);
    expect(await publishing({ store_url: "s3://fleet.cache.example?region=us-east-2" })).toEqual([
      "s3",
      "https://s3.us-east-2.amazonaws.com/fleet.cache.example/status/host-keys/web1.pub",
      "us-east-2",
    ]);
    const china = {
      "data.aws_partition.current": { partition: "aws-cn", dns_suffix: "amazonaws.com.cn" },
    };
    expect((await publishing({ store_url: "s3://fleet-cache?region=cn-north-1" }, china))[1]).toBe(
      "https://fleet-cache.s3.cn-north-1.amazonaws.com.cn/status/host-keys/web1.pub",
    );
    expect(await publishing({ store_url: "file:///srv/fleet store?fsync=false" })).toEqual([
      "file",
      "/srv/fleet store/status/host-keys/web1.pub",
      "",
    ]);
  });

  it("not at all without a store, nor on an agent host (its agent publishes)", async () => {
    expect(await publishing({})).toEqual(["", "", ""]);
    expect(
      await publishing({
        agent_enabled: true,
        ...GIVEN,
        store_url: "s3://fleet-cache?region=eu-west-1",
      }),
    ).toEqual(["", "", ""]);
  });

  it("needs the S3 store's region, which the script signs for", async () => {
    const lifecycle = blockAt(["resource", "aws_instance", "host", "lifecycle"]);
    const precondition = blocks(lifecycle.precondition).find((p) =>
      String((p as Body).error_message).includes("region"),
    ) as Body;
    const holds = (vars: Record<string, HclValue>) => evaluate(precondition.condition, vars);
    expect(await holds({ agent_enabled: false, store_url: "s3://fleet-cache" })).toBe(false);
    expect(
      await holds({ agent_enabled: false, store_url: "s3://fleet-cache?region=eu-west-1" }),
    ).toBe(true);
    expect(await holds({ agent_enabled: false, store_url: "file:///srv/fleet" })).toBe(true);
    expect(await holds({ agent_enabled: true, ...GIVEN, store_url: "s3://fleet-cache" })).toBe(
      true,
    );
  });

  it("with one more permission, exactly for its own key's object, and only when it publishes to S3", async () => {
    const policy = mod.resources.get("aws_iam_role_policy.publish_host_key")?.body as Body;
    const count = (vars: Record<string, HclValue>) => evaluateValue(policy.count, resolver(vars));
    expect(
      await count({ agent_enabled: false, store_url: "s3://fleet-cache?region=eu-west-1" }),
    ).toBe(1);
    expect(await count({ agent_enabled: false, store_url: "file:///srv/fleet" })).toBe(0);
    expect(await count({ agent_enabled: false })).toBe(0);
    expect(await count({ agent_enabled: true, ...GIVEN })).toBe(0);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of a reference.
    expect(String(policy.policy)).toBe("${data.aws_iam_policy_document.publish_host_key.json}");
    // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of a reference.
    expect(String(policy.role)).toBe("${aws_iam_role.host.id}");

    const document = validatePolicy(
      await renderPolicyDocument(
        mod,
        "publish_host_key",
        resolver({ agent_enabled: false, store_url: "s3://fleet-cache?region=eu-west-1" }),
      ),
      "publish_host_key",
    );
    const decide = (action: string, key: string) =>
      iamDecision([document], {
        action,
        resource: `arn:aws:s3:::fleet-cache/${key}`,
        context: { "aws:PrincipalTag/nixship-host": "web1" },
      });
    expect(decide("s3:PutObject", "status/host-keys/web1.pub")).toBe("allow");
    expect(decide("s3:GetObject", "status/host-keys/web1.pub")).toBe("allow");
    for (const [action, key] of [
      ["s3:PutObject", "status/host-keys/web2.pub"],
      ["s3:PutObject", "status/host-keys/web1.pub.tmp"],
      ["s3:PutObject", "status/hosts/web1.json"],
      ["s3:DeleteObject", "status/host-keys/web1.pub"],
      ["s3:GetObject", "channels/production.json"],
    ]) {
      expect(decide(action as string, key as string), `${action} ${key}`).toBe("implicit-deny");
    }
  });
});

describe("the host module's service ports and AMI owners", () => {
  it("opens each service port to each range, and none by default", async () => {
    const resolver = (vars: Record<string, HclValue>) =>
      moduleResolver(mod, { vars: { ...REQUIRED, ...vars } });
    const ingress = (vars: Record<string, HclValue>) =>
      resolver(vars)(["local", "ingress"], "local.ingress");
    expect(await ingress({})).toEqual([]);
    expect(
      await ingress({ ingress_ports: [80, 443], ingress_cidr_blocks: ["0.0.0.0/0", "::/0"] }),
    ).toEqual([
      { port: 80, cidr: "0.0.0.0/0" },
      { port: 80, cidr: "::/0" },
      { port: 443, cidr: "0.0.0.0/0" },
      { port: 443, cidr: "::/0" },
    ]);
    const ports = blockAt(["variable", "ingress_ports", "validation"]).condition;
    expect(await evaluate(ports, { ingress_ports: [22, 8080] })).toBe(true);
    expect(await evaluate(ports, { ingress_ports: [0] })).toBe(false);
    expect(await evaluate(ports, { ingress_ports: [65536] })).toBe(false);
  });

  it("looks up AMIs of the owners given, NixOS's by default", async () => {
    const owners = blockAt(["data", "aws_ami", "nixos"]).owners;
    expect(await evaluate(owners, {})).toEqual(["427812963091"]);
    expect(await evaluate(owners, { ami_owners: ["self"] })).toEqual(["self"]);
    const valid = blockAt(["variable", "ami_owners", "validation"]).condition;
    expect(await evaluate(valid, { ami_owners: ["123456789012", "self"] })).toBe(true);
    expect(await evaluate(valid, { ami_owners: ["12345"] })).toBe(false);
    expect(await evaluate(valid, { ami_owners: [] })).toBe(false);
  });
});

describe("a store URL with a key prefix", () => {
  const PREFIXED = "s3://fleet-cache/fleet/nix?region=eu-west-1";
  const NARINFO = "0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.narinfo";
  const NAR = "nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.zst";
  const validation = () => blockAt(["variable", "store_url", "validation"]).condition;
  const accepts = (url: string) => evaluate(validation(), { store_url: url });
  const preconditions = () =>
    blocks(blockAt(["resource", "aws_instance", "host", "lifecycle"]).precondition) as Body[];

  it("is accepted as the cache module writes it; odd prefixes are not", async () => {
    for (const url of [
      PREFIXED,
      "s3://fleet-cache/nix?region=eu-west-1",
      "s3://fleet-cache/nix/?region=eu-west-1",
      "s3://fleet.cache/a_b/c-d.e?region=eu-west-1&endpoint=https://minio.example:9000",
      "s3://fleet-cache?region=eu-west-1",
      "file:///srv/fleet store",
    ]) {
      expect(await accepts(url), url).toBe(true);
    }
    for (const url of [
      "s3://fleet-cache/?region=eu-west-1",
      "s3://fleet-cache//nix?region=eu-west-1",
      "s3://fleet-cache/./nix?region=eu-west-1",
      "s3://fleet-cache/nix/..?region=eu-west-1",
      "s3://fleet-cache/n%20x?region=eu-west-1",
      "s3://fleet-cache/n*x?region=eu-west-1",
      "s3://fleet-cache/nix\n?region=eu-west-1",
    ]) {
      expect(await accepts(url), url).toBe(false);
    }
    const message = String(blockAt(["variable", "store_url", "validation"]).error_message);
    expect(message).toContain("s3://BUCKET/PREFIX?region=R");
    expect(message).not.toContain("no key prefix");

    // The cache module's store_url for its prefix is one.
    const cacheUrl = await evaluateValue(
      cacheModule.outputs.get("store_url")?.value,
      moduleResolver(cacheModule, {
        vars: { bucket_name: "fleet-cache", prefix: "fleet/nix/" },
        known: {
          "aws_s3_bucket.this.bucket": "fleet-cache",
          "aws_s3_bucket.this.region": "eu-west-1",
        },
      }),
    );
    expect(cacheUrl).toBe(PREFIXED);
  });

  it("makes an agent host's user-data fetch the package from under the prefix first, and only then", async () => {
    const fetchVars = (vars: Record<string, HclValue>, known: Record<string, HclValue> = {}) =>
      resolver({ ...GIVEN, ...vars }, known)(
        ["local", "fetch_user_data_vars"],
        "fetch_user_data_vars",
      );
    const needed = (vars: Record<string, HclValue>) =>
      localValue("fetch_needed", { ...GIVEN, ...vars });
    expect(await needed({ store_url: PREFIXED })).toBe(true);
    expect(await needed({ store_url: "s3://fleet-cache?region=eu-west-1" })).toBe(false);
    expect(await needed({ store_url: "file:///srv/fleet" })).toBe(false);
    expect(await needed({ store_url: PREFIXED, agent_enabled: false })).toBe(false);

    expect(await fetchVars({ store_url: PREFIXED })).toEqual({
      host_name: "web1",
      nixship_package: GIVEN.nixship_package,
      cache_public_keys: GIVEN.cache_public_keys,
      store_http_url: "https://fleet-cache.s3.eu-west-1.amazonaws.com/fleet/nix",
      store_region: "eu-west-1",
      fetch_max_paths: 2000,
      fetch_max_bytes: 4294967296,
    });
    const address = async (url: string, known: Record<string, HclValue> = {}) =>
      ((await fetchVars({ store_url: url }, known)) as Record<string, HclValue>).store_http_url;
    // A bucket with dots path-style; endpoint= path-style there, as nixship addresses it; the
    // partition's domain.
    expect(await address("s3://fleet.cache/nix/?region=us-east-2")).toBe(
      "https://s3.us-east-2.amazonaws.com/fleet.cache/nix",
    );
    expect(
      await address("s3://fleet-cache/a/b?region=eu-west-1&endpoint=http://127.0.0.1:9000/"),
    ).toBe("http://127.0.0.1:9000/fleet-cache/a/b");
    expect(
      await address("s3://fleet-cache/nix?region=cn-north-1", {
        "data.aws_partition.current": { partition: "aws-cn", dns_suffix: "amazonaws.com.cn" },
      }),
    ).toBe("https://fleet-cache.s3.cn-north-1.amazonaws.com.cn/nix");
  });

  it("needs the region, which the fetch signs for, and an endpoint= written as it is used", async () => {
    const region = preconditions().find((p) =>
      String(p.error_message).includes("with a key prefix in store_url"),
    ) as Body;
    const endpoint = preconditions().find((p) =>
      String(p.error_message).includes("endpoint="),
    ) as Body;
    const holds = (p: Body, vars: Record<string, HclValue>) =>
      evaluate(p.condition, { ...GIVEN, ...vars });
    expect(await holds(region, { store_url: PREFIXED })).toBe(true);
    expect(await holds(region, { store_url: "s3://fleet-cache/nix" })).toBe(false);
    expect(await holds(region, { store_url: "s3://fleet-cache" })).toBe(true);
    expect(await holds(region, { store_url: "s3://fleet-cache/nix", agent_enabled: false })).toBe(
      true,
    );
    const withEndpoint = (e: string) => `${PREFIXED}&endpoint=${e}`;
    expect(await holds(endpoint, { store_url: withEndpoint("https://minio.example:9000") })).toBe(
      true,
    );
    expect(await holds(endpoint, { store_url: withEndpoint("https%3A%2F%2Fminio") })).toBe(false);
    expect(await holds(endpoint, { store_url: withEndpoint("https://minio/x") })).toBe(false);
    // Nix reads an unprefixed store's endpoint= itself: not the module's business.
    expect(
      await holds(endpoint, { store_url: "s3://fleet-cache?region=r&endpoint=https%3A%2F%2Fm" }),
    ).toBe(true);
  });

  it("is read with the cache module's agent policy, which grants what the fetch asks for under the prefix and nothing outside it", async () => {
    const agent = validatePolicy(
      await renderPolicyDocument(
        cacheModule,
        "agent",
        moduleResolver(cacheModule, {
          vars: { bucket_name: "fleet-cache", prefix: "fleet/nix" },
          known: { "aws_s3_bucket.this.arn": "arn:aws:s3:::fleet-cache" },
        }),
      ),
      "agent",
    );
    const decide = (action: string, key: string) =>
      iamDecision([agent], {
        action,
        resource:
          action === "s3:ListBucket"
            ? "arn:aws:s3:::fleet-cache"
            : `arn:aws:s3:::fleet-cache/${key}`,
        context: {
          "aws:PrincipalTag/nixship-host": "web1",
          ...(action === "s3:ListBucket" ? { "s3:prefix": key } : {}),
        },
      });
    // The fetch's GETs (and, for a missing narinfo, the ListBucket S3 asks for a 404).
    for (const [action, key] of [
      ["s3:GetObject", `fleet/nix/${NARINFO}`],
      ["s3:GetObject", `fleet/nix/${NAR}`],
      ["s3:ListBucket", `fleet/nix/${NARINFO}`],
    ]) {
      expect(decide(action as string, key as string), `${action} ${key}`).toBe("allow");
    }
    for (const [action, key] of [
      ["s3:GetObject", NARINFO],
      ["s3:GetObject", `other/${NAR}`],
      ["s3:GetObject", `fleet/${NARINFO}`],
      ["s3:GetObject", `fleet/nix/secrets/web2/x`],
      ["s3:PutObject", `fleet/nix/${NARINFO}`],
      ["s3:ListBucket", NARINFO],
      ["s3:ListBucket", "fleet/nix/"],
    ]) {
      expect(decide(action as string, key as string), `${action} ${key}`).toBe("implicit-deny");
    }
    // The host module grants an agent host nothing of the store on its own.
    const own = mod.resources.get("aws_iam_role_policy.publish_host_key")?.body as Body;
    expect(await evaluate(own.count, { ...GIVEN, store_url: PREFIXED })).toBe(0);
  });

  it("has a host without the agent publish its key, and get its one permission, under the prefix", async () => {
    const vars = { agent_enabled: false, store_url: PREFIXED };
    const ssh = (await localValue("ssh_user_data_vars", vars)) as Record<string, string>;
    expect(ssh.host_key_url).toBe(
      "https://fleet-cache.s3.eu-west-1.amazonaws.com/fleet/nix/status/host-keys/web1.pub",
    );
    const document = validatePolicy(
      await renderPolicyDocument(mod, "publish_host_key", resolver(vars)),
      "publish_host_key",
    );
    const decide = (action: string, key: string) =>
      iamDecision([document], {
        action,
        resource: `arn:aws:s3:::fleet-cache/${key}`,
        context: { "aws:PrincipalTag/nixship-host": "web1" },
      });
    expect(decide("s3:PutObject", "fleet/nix/status/host-keys/web1.pub")).toBe("allow");
    expect(decide("s3:PutObject", "status/host-keys/web1.pub")).toBe("implicit-deny");
    expect(decide("s3:GetObject", "fleet/nix/status/host-keys/web2.pub")).toBe("implicit-deny");
  });
});

describe("the host module's role and Parameter Store", () => {
  it("denies every Parameter Store read AmazonSSMManagedInstanceCore grants, unless allow_parameter_store", async () => {
    const resolver = (vars: Record<string, HclValue>) =>
      moduleResolver(mod, { vars: { ...REQUIRED, ...vars } });
    const policy = mod.resources.get("aws_iam_role_policy.no_parameter_store")?.body as Body;
    expect(await evaluateValue(policy.count, resolver({}))).toBe(1);
    expect(await evaluateValue(policy.count, resolver({ allow_parameter_store: true }))).toBe(0);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of a reference.
    expect(String(policy.role)).toBe("${aws_iam_role.host.id}");
    const document = validatePolicy(
      await renderPolicyDocument(mod, "no_parameter_store", resolver({})),
      "no_parameter_store",
    );
    // What the managed policy allows (ssm:GetParameter* on *), with the deny beside it.
    const managed = validatePolicy(
      {
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: ["ssm:GetParameter", "ssm:GetParameters", "ssm:UpdateInstanceInformation"],
            Resource: "*",
          },
        ],
      },
      "AmazonSSMManagedInstanceCore (its parameter and instance statements)",
    );
    const decide = (action: string) =>
      iamDecision([managed, document], {
        action,
        resource: "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db-password",
        context: {},
      });
    for (const action of ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]) {
      expect(decide(action), action).toBe("explicit-deny");
    }
    expect(decide("ssm:UpdateInstanceInformation")).toBe("allow");
  });
});
