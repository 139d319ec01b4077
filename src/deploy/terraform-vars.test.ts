import { describe, expect, it } from "vitest";
import { externalResult, imageFromInfo, terraformVars } from "./terraform-vars.js";

const OUT = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-nixos-amazon-image-25.05-x86_64-linux";
const VHD = `${OUT}/nixos-amazon-image-25.05-x86_64-linux.vhd`;

/** image-info.json as nixpkgs' amazon-image.nix writes it for a one-disk image. */
function info(change: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    label: "25.05.20250101.abcdef",
    boot_mode: "legacy-bios",
    system: "x86_64-linux",
    logical_bytes: "4294967296",
    file: VHD,
    disks: { root: { logical_bytes: "4294967296", file: VHD } },
    ...change,
  };
}

const image = (value: unknown) => imageFromInfo(value, "--image X", "image-info.json");

describe("imageFromInfo", () => {
  it("reads the image file, its format, boot mode and architecture", () => {
    expect(image(info())).toEqual({
      image_path: VHD,
      image_format: "VHD",
      image_boot_mode: "legacy-bios",
      image_architecture: "x86_64",
    });
    const raw = `${OUT}/nixos.img`;
    expect(
      image({ boot_mode: "uefi", system: "aarch64-linux", disks: { root: { file: raw } } }),
    ).toEqual({
      image_path: raw,
      image_format: "RAW",
      image_boot_mode: "uefi",
      image_architecture: "arm64",
    });
    // A file in another store path (an image referenced by the build's output) is taken.
    const other = "/nix/store/7yq4b2dmw7f3pl3rj0i36k6a6n3w3mnc-image/disk.RAW";
    expect(image(info({ file: other, disks: undefined })).image_format).toBe("RAW");
  });

  it.each([
    [
      "a ZFS image's two disks",
      { file: undefined, disks: { boot: { file: VHD }, root: { file: VHD } } },
      /image of 2 disks \(boot, root\); the ami-import module imports one/,
    ],
    [
      "a qcow2 image",
      { file: `${OUT}/nixos.qcow2`, disks: undefined },
      /a \.qcow2 file; the ami-import module imports VHD \(\.vhd\) or RAW/,
    ],
    [
      "an image for another system",
      { system: "riscv64-linux" },
      /an image for riscv64-linux; EC2 runs x86_64-linux and aarch64-linux/,
    ],
  ])("refuses %s as unsupported", (_, change, message) => {
    expect(() => image(info(change))).toThrow(
      expect.objectContaining({
        code: "image-unsupported",
        message: expect.stringMatching(message),
      }),
    );
  });

  it.each([
    ["no file", { file: undefined, disks: undefined }, /no "file" names the disk image/],
    [
      "a file outside the store",
      { file: "/tmp/x.vhd", disks: undefined },
      /"\/tmp\/x\.vhd", not a file inside a store path/,
    ],
    [
      "a way out of the store path",
      { file: `${OUT}/../x.vhd`, disks: undefined },
      /not a file inside a store path/,
    ],
    [
      "two different files",
      { disks: { root: { file: `${OUT}/b.vhd` } } },
      /"file" and "disks\.root\.file" name different files/,
    ],
    ["no boot_mode", { boot_mode: undefined }, /no "boot_mode"/],
    [
      "another boot_mode",
      { boot_mode: "bios" },
      /"boot_mode" is "bios", not one of legacy-bios, uefi, uefi-preferred/,
    ],
    ["no system", { system: 64 }, /no "system"/],
    ["disks that are not an object", { disks: [] }, /"disks" is not an object/],
  ])("refuses image-info.json with %s, naming the file", (_, change, message) => {
    expect(() => image(info(change))).toThrow(
      expect.objectContaining({
        code: "bad-image-info",
        exitCode: 2,
        message: expect.stringMatching(new RegExp(`^image-info\\.json: .*${message.source}`)),
      }),
    );
  });

  it("refuses what is not an object", () => {
    expect(() => image([])).toThrow(/^image-info\.json: not a JSON object$/);
  });
});

describe("terraformVars", () => {
  const systems = new Map([
    ["a", "/nix/store/a"],
    ["b", "/nix/store/b"],
  ]);

  it("adds the image's variables only when there is an image, in both formats", () => {
    const plain = terraformVars(["b", "a"], systems, undefined);
    expect(plain).toEqual({ store_paths: { b: "/nix/store/b", a: "/nix/store/a" }, cache_url: "" });
    expect(Object.keys(plain.store_paths)).toEqual(["b", "a"]);
    expect(externalResult(plain)).toEqual({
      store_paths_json: '{"b":"/nix/store/b","a":"/nix/store/a"}',
      cache_url: "",
    });
    const vars = terraformVars(["a"], systems, "s3://c", image(info()));
    expect(Object.keys(vars)).toEqual([
      "store_paths",
      "cache_url",
      "image_path",
      "image_format",
      "image_boot_mode",
      "image_architecture",
    ]);
    const external = externalResult(vars);
    expect(external).toEqual({
      store_paths_json: '{"a":"/nix/store/a"}',
      cache_url: "s3://c",
      image_path: VHD,
      image_format: "VHD",
      image_boot_mode: "legacy-bios",
      image_architecture: "x86_64",
    });
    expect(Object.values(external).every((v) => typeof v === "string")).toBe(true);
  });

  it("throws for a host without a built system", () => {
    expect(() => terraformVars(["c"], systems, undefined)).toThrow("no system was built for c");
  });
});
