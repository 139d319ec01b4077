import { describe, expect, it } from "vitest";
import { Sha256 } from "../nix/hash.js";
import { makeStorePath, type StorePath } from "../nix/store-path.js";
import { deltaBasesOf, deltaPairsFor } from "./delta-bases.js";
import { DELTA_MAX_BASES, DELTA_MAX_PATHS, DELTA_MAX_PER_NAME } from "./delta-caps.js";

/** A store path named `name`; `seed` tells two of the same name apart. */
function p(name: string, seed = ""): StorePath {
  return makeStorePath("output:out", Sha256.of(`${name}/${seed}`), name);
}

describe("deltaBasesOf", () => {
  it("takes paths of the same package name, the version aside, and nothing else", () => {
    const target = p("openssl-3.0.14");
    const host = [p("openssl-3.0.13"), p("openssh-9.6p1"), p("openssl"), p("glibc-2.39")];
    expect(deltaBasesOf(target, host)).toEqual([p("openssl-3.0.13"), p("openssl")]);
    expect(deltaBasesOf(p("hello-2.12"), host)).toEqual([]);
  });

  it("puts the same whole name (a rebuild) first, then the nearest version, at most 3", () => {
    const target = p("python3-3.11.9", "new");
    const host = [
      p("python3-2.7.18"),
      p("python3-3.10.14"),
      p("python3-3.11.9", "old"),
      p("python3-3.12.4"),
      p("python3-3.11.8"),
    ];
    const bases = deltaBasesOf(target, host);
    expect(bases).toHaveLength(DELTA_MAX_BASES);
    expect(bases.slice(0, 2)).toEqual([p("python3-3.11.9", "old"), p("python3-3.11.8")]);
    // 3.10.14 and 3.12.4 share "3.1" with 3.11.9: the tie goes by base name; 2.7.18 is out.
    const tied = [p("python3-3.10.14"), p("python3-3.12.4")].sort((a, b) =>
      a.slice(11) < b.slice(11) ? -1 : 1,
    );
    expect(bases[2]).toBe(tied[0]);
  });

  it("prefers the output that ends like the target's among versions equally near", () => {
    const target = p("openssl-3.0.14-dev");
    const host = [p("openssl-3.0.13"), p("openssl-3.0.13-dev"), p("openssl-3.0.13-bin")];
    expect(deltaBasesOf(target, host)[0]).toBe(p("openssl-3.0.13-dev"));
  });

  it("never names the target as its own base, and counts a path listed twice once", () => {
    const target = p("zlib-1.3.1");
    const other = p("zlib-1.3");
    expect(deltaBasesOf(target, [target, other, other])).toEqual([other]);
  });
});

describe("deltaPairsFor", () => {
  it("pairs each missing path with its bases, targets in byte order, each pair once", () => {
    const host = [p("bash-5.2p26"), p("glibc-2.39-52"), p("glibc-2.39-52-bin")];
    const missing = [p("glibc-2.39-70"), p("bash-5.2p32"), p("curl-8.9.1"), p("glibc-2.39-70")];
    const glibc = [
      { target: p("glibc-2.39-70"), base: p("glibc-2.39-52") },
      { target: p("glibc-2.39-70"), base: p("glibc-2.39-52-bin") },
    ];
    const bash = [{ target: p("bash-5.2p32"), base: p("bash-5.2p26") }];
    const pairs = deltaPairsFor(host, missing);
    expect(pairs).toEqual(
      p("glibc-2.39-70") < p("bash-5.2p32") ? [...glibc, ...bash] : [...bash, ...glibc],
    );
    // The order given changes nothing: the host sorts what it lacks as well.
    expect(deltaPairsFor([...host].reverse(), [...missing].reverse())).toEqual(pairs);
  });

  it(`takes the first ${DELTA_MAX_PATHS} targets in byte order, as the host's script does`, () => {
    const host = [p("lib-1.0")];
    const missing = Array.from({ length: DELTA_MAX_PATHS + 3 }, (_, i) => p(`lib-2.${i}`));
    const pairs = deltaPairsFor(host, missing);
    expect(pairs.map((x) => x.target)).toEqual([...missing].sort().slice(0, DELTA_MAX_PATHS));
  });

  it(`weighs the first ${DELTA_MAX_PER_NAME} paths of a name in byte order as bases`, () => {
    const weighed = Array.from({ length: DELTA_MAX_PER_NAME }, (_, i) => p("foo-1.0", `${i}`));
    const highest = [...weighed].sort().at(-1) as StorePath;
    // A path past the cap in byte order, of the target's whole name: it would rank first.
    let seed = 0;
    while (p("foo-9.9", `${seed}`) < highest) seed++;
    const last = p("foo-9.9", `${seed}`);
    const host = [last, ...weighed];
    const target = p("foo-9.9", "new");
    const bases = deltaBasesOf(target, host);
    expect(bases).toHaveLength(DELTA_MAX_BASES);
    expect(bases).not.toContain(last);
    expect(deltaBasesOf(target, [last])).toEqual([last]);
  });
});
