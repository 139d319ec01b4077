// `nixship terraform vars`: the Nix → Terraform bridge. Builds the selected hosts' systems, and
// with --image a disk image for the ami-import module, in the build command's one evaluation,
// and prints them as Terraform input variables.

import { buildSystems } from "../deploy/build.js";
import { externalResult, readImageOutput, terraformVars } from "../deploy/terraform-vars.js";
import { NixshipError, UsageError } from "../errors.js";
import { type AgentHost, FLAKE_INSTALLABLE_PATTERN, type SystemSpec } from "../fleet/fleet.js";
import { selectHosts } from "../fleet/select.js";
import { parseStorePath } from "../nix/store-path.js";
import { type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { readFleetInput } from "./fleet-input.js";
import { whileTrapped } from "./interrupts.js";
import { checkOutputFile, writeOutputFile } from "./output-file.js";

const FORMATS = ["tfvars", "external"] as const;
type Format = (typeof FORMATS)[number];

/**
 * The image rides along in the systems' one evaluation and build as a host of this name, which
 * no fleet host can have (names start with a letter or digit); errors name it as the flag.
 */
const IMAGE_HOST = "--image";
const IMAGE_EXAMPLE = ".#nixosConfigurations.web1.config.system.build.amazonImage";

export const terraformVarsCommand: Command = {
  path: ["terraform", "vars"],
  summary: "build the selected hosts' systems and print them as Terraform variables",
  help: `Usage: nixship terraform vars [--fleet FILE] [--on SELECTOR] [--image INSTALLABLE]
                              [--format tfvars|external] [--out FILE.json]

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

With --image, also a disk image for terraform/modules/ami-import, built in the same
evaluation and build: a NixOS image build (a configuration importing
virtualisation/amazon-image.nix), whose nix-support/image-info.json names the image file:

  nixship terraform vars --image '${IMAGE_EXAMPLE}'
  {"store_paths": {...}, "cache_url": "...",
   "image_path": "/nix/store/...-nixos-amazon-image-.../nixos-amazon-image-....vhd",
   "image_format": "VHD", "image_boot_mode": "legacy-bios", "image_architecture": "x86_64"}

image_path (the image file), image_format (VHD for .vhd, RAW for .raw and .img),
image_boot_mode (the image's boot_mode) and image_architecture (x86_64 or arm64, from its
system) are the module's image_path, image_format, boot_mode and architecture. A relative
flake reference is relative to the fleet file's directory, as the hosts' systems are; a
store path names an image already built. An output without image-info.json, a qcow2 image or
a ZFS image (two disks) is refused.

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
  --fleet FILE       the fleet file, or a flake's fleet output (.#nixship) (default:
                     $NIXSHIP_FLEET, else ./nixship.json, else .#nixship)
  --on SELECTOR      hosts by name or tag: web1,@web,@db-* (default: every host)
  --image INSTALLABLE
                     also build this disk image and print image_path, image_format,
                     image_boot_mode and image_architecture (see above)
  --format F         tfvars (default): {"store_paths", "cache_url"}; external: the same as
                     strings only, {"store_paths_json", "cache_url"}; with --image, both
                     add the image_* strings
  --out FILE.json    write the variables to FILE.json (atomically: a temp file renamed into
                     place) instead of stdout; tfvars format only

Exit codes: 0 built and printed, 1 a build failed (or the image's output lacks the file it
names), 2 bad usage or input (fleet file, selector, flags, a flake output that does not exist,
an --image that is not a disk image the ami-import module takes).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        fleet: { type: "string" },
        on: { type: "string" },
        image: { type: "string" },
        format: { type: "string" },
        out: { type: "string" },
      },
      "terraform vars",
    );
    refuseArguments(positionals, "terraform vars");
    const format = parseFormat(values.format);
    if (values.out !== undefined) {
      checkOutFile(values.out, format);
      // Its place is checked before the build, which may take an hour, not after.
      await checkOutputFile(values.out);
    }
    const image = values.image === undefined ? undefined : imageSpec(values.image);
    const { fleet, fleetDir } = await readFleetInput(values, io);
    const hosts = selectHosts(fleet, values.on);
    // An interrupt stops Nix too (a SIGTERM reaches nixship alone): exit 130, no build left.
    const built = await whileTrapped("terraform vars", (signal) =>
      buildSystems(image === undefined ? hosts : [...hosts, imageHost(image)], fleetDir, {
        signal,
      }),
    ).catch((err: unknown) => {
      if (err instanceof NixshipError) {
        err.message = err.message.replaceAll(`hosts.${IMAGE_HOST}.system`, IMAGE_HOST);
      }
      throw err;
    });
    const imageVars =
      image === undefined
        ? undefined
        : await readImageOutput(built.byHost.get(IMAGE_HOST) as string, values.image as string);
    const vars = terraformVars(
      hosts.map((h) => h.name),
      built.byHost,
      fleet.cache?.url,
      imageVars,
    );
    const systems = built.systems.filter((s) => s.hosts.some((h) => h !== IMAGE_HOST)).length;
    const count = `${hosts.length} host${hosts.length === 1 ? "" : "s"}, ${systems} system${systems === 1 ? "" : "s"}${image === undefined ? "" : ", the image"}`;
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

/** --image: a flake installable, or the store path of an image already built. */
function imageSpec(text: string): SystemSpec {
  if (text.startsWith("/"))
    return { kind: "store-path", path: parseStorePath(text, "--image").path };
  if (FLAKE_INSTALLABLE_PATTERN.test(text)) return { kind: "flake", installable: text };
  throw new UsageError(
    `terraform vars: --image must give a flake installable or a store path, got '${text}'`,
    `e.g. --image '${IMAGE_EXAMPLE}'`,
  );
}

function imageHost(system: SystemSpec): AgentHost {
  return { name: IMAGE_HOST, tags: [], address: undefined, system, delivery: "agent" };
}

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
