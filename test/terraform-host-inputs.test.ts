// Issue 16, the host module: the agent's inputs are needed only when agent_enabled, service
// ports open only when asked, and AMIs looked up from the owners given. Evaluated from the
// module's own HCL as Terraform would: each agent input's validation accepts null, the
// aws_instance's precondition holds for an ssh/ssm host with none of them and fails for an
// agent host missing any, and such a host gets no user-data (nothing of the agent).
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { evaluateValue, type HclValue } from "./support/hcl-expr.js";
import { blocks, loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HOST_DIR = join(ROOT, "terraform", "modules", "host");
const AGENT_INPUTS = ["nixship_package", "store_url", "cache_public_keys", "release_public_keys"];
const KEY = "cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I=";
const GIVEN: Record<string, HclValue> = {
  nixship_package: "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixship-0.1.0",
  store_url: "s3://fleet-cache?region=eu-west-1",
  cache_public_keys: [KEY],
  release_public_keys: [KEY.replace("cache-1", "release-1")],
};
const REQUIRED = { name: "web1", subnet_id: "subnet-1", vpc_id: "vpc-1" };

type Body = Record<string, unknown>;
let mod: TfModule;

/** The first block at `path` (hcl2json nests labelled blocks as objects of lists). */
function blockAt(path: readonly string[]): Body {
  for (const file of mod.files) {
    let node: unknown = file.body;
    for (const key of path) node = blocks((node as Body | undefined)?.[key])[0];
    if (node !== undefined) return node as Body;
  }
  throw new Error(`no ${path.join(".")} in ${HOST_DIR}`);
}

const evaluate = (expression: unknown, vars: Record<string, HclValue>) =>
  evaluateValue(expression, moduleResolver(mod, { vars: { ...REQUIRED, ...vars } }));

beforeAll(async () => {
  mod = await loadModule(HOST_DIR, ROOT);
});

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

  it("give a host without the agent no user-data at all", async () => {
    const instance = blockAt(["resource", "aws_instance", "host"]);
    expect(await evaluate(instance.user_data, { agent_enabled: false })).toBeNull();
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
