// The Nix → Terraform bridge: built systems (and a disk image) as Terraform input variables.
// The names and types are those the deploy module and examples/aws declare: store_paths
// (map(string), host name → system store path) and cache_url (string, "" when the fleet has no
// cache); with an image, the inputs of the ami-import module: image_path, image_format, and the
// boot mode and architecture the image was built for.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { InputError, OperationError } from "../errors.js";
import { parseJsonText } from "../fleet/json-text.js";
import { storePathOf } from "../nix/store-path.js";
import { readFileBounded } from "../util/bounded-file.js";

export interface TerraformVars {
  readonly store_paths: Readonly<Record<string, string>>;
  readonly cache_url: string;
}

/**
 * The ami-import module's inputs, from a NixOS `amazonImage` build: `image_path` → its
 * `image_path`, `image_format` → `image_format`, `image_boot_mode` → `boot_mode`,
 * `image_architecture` → `architecture`. Strings only, so the `external` format carries them
 * as they are.
 */
export interface ImageVars {
  readonly image_path: string;
  readonly image_format: ImageFormat;
  readonly image_boot_mode: ImageBootMode;
  readonly image_architecture: ImageArchitecture;
}

/** What VM Import takes, and the ami-import module allows (`image_format`). */
export type ImageFormat = "VHD" | "RAW";
/** The ami-import module's `boot_mode` values (what `RegisterImage` takes). */
export const IMAGE_BOOT_MODES = ["legacy-bios", "uefi", "uefi-preferred"] as const;
export type ImageBootMode = (typeof IMAGE_BOOT_MODES)[number];
export type ImageArchitecture = "x86_64" | "arm64";

/** Where NixOS's image builders describe the image they made (`file`, `boot_mode`, `system`). */
export const IMAGE_INFO = "nix-support/image-info.json";
/** A larger image-info.json is not one NixOS wrote. */
const IMAGE_INFO_LIMIT = 1024 * 1024;

/** The disk image's file extension → VM Import's format (make-disk-image names raw `.img`). */
const FORMAT_BY_EXTENSION: Readonly<Record<string, ImageFormat>> = {
  vhd: "VHD",
  raw: "RAW",
  img: "RAW",
};
/** Nix's system double → the AMI's architecture (EC2 runs no other). */
const ARCHITECTURE_BY_SYSTEM: Readonly<Record<string, ImageArchitecture>> = {
  "x86_64-linux": "x86_64",
  "aarch64-linux": "arm64",
};

const AMAZON_IMAGE_HINT =
  "name a NixOS image build, e.g. --image '.#nixosConfigurations.web1.config.system.build.amazonImage' (a configuration that imports virtualisation/amazon-image.nix)";

/**
 * What Terraform's `external` data source accepts: an object of strings only, so the map
 * travels as JSON text (`jsondecode(data.external.NAME.result.store_paths_json)`).
 */
export interface ExternalResult {
  readonly store_paths_json: string;
  readonly cache_url: string;
}

/** `hosts` in the order the variables list them; each must have a built system. */
export function terraformVars(
  hosts: readonly string[],
  systemOf: ReadonlyMap<string, string>,
  cacheUrl: string | undefined,
  image?: ImageVars,
): TerraformVars & Partial<ImageVars> {
  const storePaths: Record<string, string> = {};
  for (const host of hosts) {
    const path = systemOf.get(host);
    if (path === undefined) throw new Error(`no system was built for ${host}`);
    storePaths[host] = path;
  }
  return { store_paths: storePaths, cache_url: cacheUrl ?? "", ...image };
}

export function externalResult(
  vars: TerraformVars & Partial<ImageVars>,
): ExternalResult & Partial<ImageVars> {
  const { store_paths, cache_url, ...image } = vars;
  return { store_paths_json: JSON.stringify(store_paths), cache_url, ...image };
}

/**
 * The image a NixOS image build describes in its `nix-support/image-info.json` (`value`): the
 * disk image's path (`file`, else `disks.root.file`), its format from the file's extension
 * (`.vhd`: VHD, `.raw` or `.img`: RAW), `boot_mode`, and the architecture of `system`. Throws
 * an InputError naming `named` (what the user gave) for what the ami-import module could not
 * import: a qcow2 image, several disks (a ZFS image has a boot and a root disk).
 */
export function imageFromInfo(value: unknown, named: string, source: string): ImageVars {
  const bad = (what: string) =>
    new InputError("bad-image-info", `${source}: ${what}`, {
      hint: `it is not as NixOS writes it for a disk image; ${AMAZON_IMAGE_HINT}`,
    });
  if (!isObject(value)) throw bad("not a JSON object");
  const disks = value.disks;
  if (disks !== undefined) {
    if (!isObject(disks)) throw bad('"disks" is not an object');
    const names = Object.keys(disks);
    if (names.length > 1 || (names.length === 1 && names[0] !== "root")) {
      throw new InputError(
        "image-unsupported",
        `${named} is an image of ${names.length} disks (${names.join(", ")}); the ami-import module imports one`,
        {
          hint: "a ZFS amazonImage (ec2.zfs.enable) has a boot and a root disk: build one without ZFS",
        },
      );
    }
  }
  const root = isObject(disks) && isObject(disks.root) ? disks.root.file : undefined;
  const file = value.file ?? root;
  if (typeof file !== "string" || file === "") throw bad('no "file" names the disk image');
  if (root !== undefined && root !== file) {
    throw bad(`"file" and "disks.root.file" name different files: ${file}, ${String(root)}`);
  }
  if (storePathOf(file) === undefined || file.split("/").includes("..")) {
    throw bad(`"file" is ${JSON.stringify(file)}, not a file inside a store path`);
  }
  const extension = /\.([A-Za-z0-9]+)$/.exec(file)?.[1]?.toLowerCase() ?? "";
  const format = FORMAT_BY_EXTENSION[extension];
  if (format === undefined) {
    throw new InputError(
      "image-unsupported",
      `${named}: the disk image ${file} is ${extension === "" ? "of no known format" : `a .${extension} file`}; the ami-import module imports VHD (.vhd) or RAW (.raw, .img) images`,
      { hint: 'build it as VHD or raw: amazonImage.format = "vpc" (the default) or "raw"' },
    );
  }
  const bootMode = value.boot_mode;
  if (!(IMAGE_BOOT_MODES as readonly unknown[]).includes(bootMode)) {
    throw bad(
      bootMode === undefined
        ? 'no "boot_mode" (legacy-bios or uefi)'
        : `"boot_mode" is ${JSON.stringify(bootMode)}, not one of ${IMAGE_BOOT_MODES.join(", ")}`,
    );
  }
  const system = value.system;
  if (typeof system !== "string") throw bad('no "system" (e.g. "x86_64-linux")');
  const architecture = ARCHITECTURE_BY_SYSTEM[system];
  if (architecture === undefined) {
    throw new InputError(
      "image-unsupported",
      `${named} is an image for ${system}; EC2 runs ${Object.keys(ARCHITECTURE_BY_SYSTEM).join(" and ")}`,
    );
  }
  return {
    image_path: file,
    image_format: format,
    image_boot_mode: bootMode as ImageBootMode,
    image_architecture: architecture,
  };
}

/**
 * The image in `output` (the store path `named` built): read from its image-info.json, and
 * the disk image it names checked to be a regular file there.
 */
export async function readImageOutput(output: string, named: string): Promise<ImageVars> {
  const infoFile = join(output, IMAGE_INFO);
  const bytes = await readFileBounded(
    infoFile,
    IMAGE_INFO_LIMIT,
    (size) =>
      new InputError("bad-image-info", `${infoFile} is ${size} bytes, too large to be NixOS's`),
  ).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    // The output is a file, not a directory: there is no nix-support/ in it.
    if (code === "ENOTDIR") return undefined;
    if (err instanceof InputError) throw err;
    throw code === "ENOTFILE"
      ? new InputError("bad-image-info", `${infoFile} is not a regular file`)
      : new OperationError(
          "image-info-unreadable",
          `cannot read ${infoFile}: ${code ?? String(err)}`,
        );
  });
  if (bytes === undefined) {
    throw new InputError(
      "not-an-image",
      `${named} built ${output}, which has no ${IMAGE_INFO}: it is not a disk image build`,
      { hint: AMAZON_IMAGE_HINT },
    );
  }
  const image = imageFromInfo(parseJsonText(bytes.toString("utf8"), infoFile), named, infoFile);
  const info = await stat(image.image_path).catch((err: NodeJS.ErrnoException) => err);
  if (info instanceof Error || !info.isFile()) {
    const why = info instanceof Error ? (info.code ?? info.message) : "not a regular file";
    throw new OperationError(
      "image-file-missing",
      `${infoFile} names the disk image ${image.image_path}, which is not there (${why})`,
      {
        hint: `the output does not hold the file its image-info.json names: check the derivation that made it, and the store ('nix store verify ${output}')`,
      },
    );
  }
  return image;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
