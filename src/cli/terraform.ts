// `nixship terraform vars`: the Nix → Terraform bridge. Builds the selected hosts' systems
// (the build command's one evaluation) and prints them as Terraform input variables.
import { buildSystems } from "../deploy/build.js";
import { externalResult, terraformVars } from "../deploy/terraform-vars.js";
import { UsageError } from "../errors.js";
import { selectHosts } from "../fleet/select.js";
import { type Command, parseFlags, writeJson } from "./command.js";
import { readFleetInput } from "./fleet-input.js";
import { writeOutputFile } from "./output-file.js";

const FORMATS = ["tfvars", "external"] as const;
type Format = (typeof FORMATS)[number];

export const terraformVarsCommand: Command = {
  path: ["terraform", "vars"],
  summary: "build the selected hosts' systems and print them as Terraform variables",
  help: `Usage: nixship terraform vars [--fleet FILE] [--on SELECTOR] [--format tfvars|external]
                              [--out FILE.json]

Builds the systems of the selected hosts as 'nixship build' does (one evaluation, one build)
and prints Terraform input variables as JSON, on stdout, with nothing else there (progress
and errors go to stderr):

  {"store_paths": {"web1": "/nix/store/...-nixos-system-web1", ...}, "cache_url": "s3://..."}

store_paths (map(string)) names each selected host's system; cache_url (string) is the
fleet's cache.url, or "" when the fleet has no cache. These are the variables of the
terraform/modules/deploy module and of examples/aws. Nothing is pushed: the deploy module's
'nixship deploy' pushes and deploys.

As a var file (Terraform reads a var file as JSON only when its name ends in .json; a name
ending in .auto.tfvars.json is loaded without -var-file):

  nixship terraform vars --on @web --out nixship.auto.tfvars.json
  terraform apply

As an external data source (--format external): Terraform's 'external' data source takes a
flat object of strings only, so the map travels as JSON text:

  {"store_paths_json": "{\\"web1\\":\\"/nix/store/...\\"}", "cache_url": "s3://..."}

  data "external" "nixship" {
    program = ["nixship", "terraform", "vars", "--format", "external",
               "--fleet", "\${path.module}/nixship.json", "--on", "@web"]
  }
  module "deploy" {
    source      = "../../terraform/modules/deploy"
    store_paths = jsondecode(data.external.nixship.result.store_paths_json)
    cache_url   = data.external.nixship.result.cache_url
    # ...
  }

Options:
  --fleet FILE       the fleet file (default: $NIXSHIP_FLEET, else ./nixship.json)
  --on SELECTOR      hosts by name or tag: web1,@web,@db-* (default: every host)
  --format F         tfvars (default): {"store_paths", "cache_url"}; external: the same as
                     strings only, {"store_paths_json", "cache_url"}
  --out FILE.json    write the variables to FILE.json (atomically: a temp file renamed into
                     place) instead of stdout; tfvars format only

Exit codes: 0 built and printed, 1 a build failed, 2 bad usage or input (fleet file,
selector, flags).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        fleet: { type: "string" },
        on: { type: "string" },
        format: { type: "string" },
        out: { type: "string" },
      },
      "terraform vars",
    );
    if (positionals.length > 0) {
      throw new UsageError(`terraform vars: unexpected argument '${positionals[0]}'`);
    }
    const format = parseFormat(values.format);
    if (values.out !== undefined) checkOutFile(values.out, format);
    const { fleet, fleetDir } = await readFleetInput(values, io);
    const hosts = selectHosts(fleet, values.on);
    const built = await buildSystems(hosts, fleetDir);
    const vars = terraformVars(
      hosts.map((h) => h.name),
      built.byHost,
      fleet.cache?.url,
    );
    const count = `${hosts.length} host${hosts.length === 1 ? "" : "s"}, ${built.systems.length} system${built.systems.length === 1 ? "" : "s"}`;
    if (values.out !== undefined) {
      await writeOutputFile(values.out, `${JSON.stringify(vars, null, 2)}\n`);
      io.stderr.write(`wrote ${values.out}: ${count}\n`);
      return 0;
    }
    writeJson(io, format === "external" ? externalResult(vars) : vars);
    io.stderr.write(`built ${count}\n`);
    return 0;
  },
};

function parseFormat(text: string | undefined): Format {
  if (text === undefined) return "tfvars";
  if ((FORMATS as readonly string[]).includes(text)) return text as Format;
  throw new UsageError(
    `terraform vars: --format must be one of ${FORMATS.join(", ")}, got '${text}'`,
  );
}

function checkOutFile(file: string, format: Format): void {
  if (format === "external") {
    throw new UsageError(
      "terraform vars: --out writes a var file; the external format is read by Terraform from stdout",
    );
  }
  if (!file.endsWith(".json")) {
    throw new UsageError(
      `terraform vars: --out must name a .json file, got '${file}'`,
      "Terraform reads a var file as JSON only when its name ends in .json, e.g. nixship.auto.tfvars.json",
    );
  }
}
