import { describe, expect, it } from "vitest";
import { formatNarListing, listNar } from "./nar-list.js";
import { buildNar, narNode } from "./nar-write.js";

const { regular, symlink, directory } = narNode;

describe("listNar and formatNarListing", () => {
  const nar = buildNar(
    directory([
      ["bin", directory([["hi", regular("abc", true)]])],
      ["empty", directory([])],
      ["empty.txt", regular("")],
      ["link", symlink("/tmp/outside")],
    ]),
  );

  it("lists every node in archive order, the root first", async () => {
    expect(await listNar([nar])).toEqual([
      { path: "", type: "directory" },
      { path: "bin", type: "directory" },
      { path: "bin/hi", type: "regular", size: 3, executable: true },
      { path: "empty", type: "directory" },
      { path: "empty.txt", type: "regular", size: 0, executable: false },
      { path: "link", type: "symlink", target: "/tmp/outside" },
    ]);
  });

  it("formats like `nix nar ls -lR`", async () => {
    // Captured from nix 2.8's `nix nar ls -lR <nar> /`.
    expect(formatNarListing(await listNar([nar]))).toBe(
      [
        "dr-xr-xr-x                    0 ./bin",
        "-r-xr-xr-x                    3 ./bin/hi",
        "dr-xr-xr-x                    0 ./empty",
        "-r--r--r--                    0 ./empty.txt",
        "lrwxrwxrwx                    0 ./link -> /tmp/outside",
        "",
      ].join("\n"),
    );
  });

  it("prints a root file or symlink with an empty name, as nix does", async () => {
    expect(formatNarListing(await listNar([buildNar(regular("bar"))]))).toBe(
      "-r--r--r--                    3 \n",
    );
    expect(formatNarListing(await listNar([buildNar(symlink("target"))]))).toBe(
      "lrwxrwxrwx                    0  -> target\n",
    );
  });

  it("rejects a malformed NAR instead of listing part of it", async () => {
    await expect(listNar([buildNar(regular("bar")).subarray(0, 64)])).rejects.toThrow(
      /unexpected end of NAR at byte 64/,
    );
  });
});
