import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { Sha256 } from "./hash.js";
import {
  makeSourcePath,
  makeTextPath,
  parseStorePath,
  storePathNameProblem,
  storePathOf,
} from "./store-path.js";

describe("store paths", () => {
  it("makes text paths as builtins.toFile does (vectors from nix-formats.md)", () => {
    const foo = makeTextPath("foo", "bar");
    expect(foo).toBe("/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo");
    expect(makeTextPath("baz", foo, [foo])).toBe("/nix/store/5xd714cbfnkz02h2vbsj4fm03x3f15nf-baz");
  });

  it("makes source paths as `nix-store --add` does", () => {
    // A file containing "bar" (its NAR hash is the 120-byte vector), and a directory d/f = "bar".
    const fileNarHash = Sha256.parse("sha256:1xngcmsdkdvaycaqjfzvq4gr3gib56p2l8illglnsqzhpss47pxz");
    expect(makeSourcePath("bar.txt", fileNarHash)).toBe(
      "/nix/store/zyrzzalbpdkl55jwy71xwsmhpz9iih0c-bar.txt",
    );
    const dirNarHash = Sha256.parse("sha256:15wirj287rh7jgkzr0v2m9bmv9mvxj5bw87ah83zaiq8jbgmbaiz");
    expect(makeSourcePath("d", dirNarHash)).toBe("/nix/store/0yf3isnhrw41xkrkf3wfwxgjz8l5g3b6-d");
    expect(makeSourcePath("d", dirNarHash, [], true)).not.toBe(
      "/nix/store/0yf3isnhrw41xkrkf3wfwxgjz8l5g3b6-d",
    );
  });

  it("parses a store path into its parts", () => {
    const parts = parseStorePath("/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep");
    expect(parts.hashPart).toBe("62zx2hw8gp9dzf022s6cibdx2pl0v9dx");
    expect(parts.name).toBe("dep");
    expect(parts.baseName).toBe("62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep");
  });

  it.each([
    ["/tmp/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep", /not under \/nix\/store/],
    ["/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9de-dep", /32-character nix32 hash/],
    ["/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx", /32-character nix32 hash/],
    ["/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-", /name is empty/],
    // A file inside a store path: that path is named, rather than the '/' as a bad character.
    [
      "/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-a/b",
      /is inside the store path '\/nix\/store\/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-a': give that path$/,
    ],
    ["/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-a b/c", /characters outside/],
    ["/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-..", /'\.' or '\.\.'/],
    ["/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-.-x", /starts with '\.-'/],
    [`/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-${"a".repeat(212)}`, /longer than 211/],
  ])("rejects %s", (text, message) => {
    expect(() => parseStorePath(text)).toThrow(InputError);
    expect(() => parseStorePath(text)).toThrow(message);
  });

  it("accepts a 211-character name and every allowed character", () => {
    expect(storePathNameProblem("a".repeat(211))).toBeUndefined();
    expect(storePathNameProblem("aZ09+-._?=")).toBeUndefined();
  });

  it("finds the store path that contains a file", () => {
    expect(storePathOf("/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep/bin/x")).toBe(
      "/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep",
    );
    expect(storePathOf("/usr/bin")).toBeUndefined();
  });
});
