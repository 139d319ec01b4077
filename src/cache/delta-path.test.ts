import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { Sha256 } from "../nix/hash.js";
import type { StorePath } from "../nix/store-path.js";
import {
  deltaHashPart,
  deltaPathOf,
  deltaTargetHashPart,
  formatDeltaInfo,
  parseDeltaInfo,
} from "./delta-path.js";

const TARGET = "/nix/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.39-52" as StorePath;
const BASE = "/nix/store/0c0sixl1wbw7wz1qxc5iq7m8ns9ha1zi-glibc-2.39-5" as StorePath;

describe("delta paths", () => {
  it("names the delta by the pair, with the target's hash part in its name", () => {
    const delta = deltaPathOf(TARGET, BASE);
    expect(delta).toMatch(
      /^\/nix\/store\/[0-9a-z]{32}-nixship-delta-7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc$/,
    );
    expect(deltaTargetHashPart(delta)).toBe("7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc");
    expect(deltaPathOf(BASE, TARGET)).not.toBe(delta);
    expect(deltaTargetHashPart(TARGET)).toBeUndefined();
    expect(() => deltaPathOf(TARGET, TARGET)).toThrow(/two different paths/);
  });

  it("computes the hash part as a host does, with the real nix-hash", () => {
    // What activate.sh's delta step runs on the host.
    const seed = `nixship-delta-v1:${TARGET.slice(11)}:${BASE.slice(11)}`;
    const hex = Sha256.of(seed).hex;
    const onHost = execFileSync("nix-hash", ["--type", "sha256", "--to-base32", hex], {
      encoding: "utf8",
    }).slice(0, 32);
    expect(deltaHashPart(TARGET, BASE)).toBe(onHost);
  });

  it("reads back what it writes of delta-info, and refuses anything else", () => {
    const info = {
      engine: "zstd-patch" as const,
      target: TARGET,
      base: BASE,
      baseNarHash: Sha256.of("base"),
      baseNarSize: 123456,
    };
    const text = formatDeltaInfo(info);
    const parsed = parseDeltaInfo(text);
    expect(parsed.baseNarHash.toString()).toBe(info.baseNarHash.toString());
    expect(formatDeltaInfo(parsed)).toBe(text);
    expect(() => parseDeltaInfo(`${text}Extra: 1\n`)).toThrow(/unknown fields/);
    expect(() => parseDeltaInfo(text.replace("zstd-patch", "bsdiff"))).toThrow(/unknown engine/);
    expect(() => parseDeltaInfo(text.replace(/BaseNarSize: .*/, "BaseNarSize: -1"))).toThrow(
      /BaseNarSize/,
    );
    expect(() => parseDeltaInfo(`${text}${text}`)).toThrow(/repeated/);
  });
});
