import { describe, expect, it } from "vitest";
import { parsePathInfoJson } from "./local-nix.js";
import { parseBuiltDerivations } from "./nix-build.js";

const DEP = "/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep";
const TOP = "/nix/store/v3qa92fkaaak650aj0sxddibnb2xa5hc-top";

describe("parsePathInfoJson", () => {
  it("reads Nix 2.8's array form, with SRI hashes", () => {
    const text = JSON.stringify([
      {
        path: TOP,
        narHash: "sha256-Cz2kkdSIDNl0KY9Hy90ua/2IAU4fjhogOILxFDXFZcs=",
        narSize: 968,
        references: [DEP],
        deriver: "/nix/store/m6q88a42916jh93iyfpnj924svi6q8ln-top.drv",
        signatures: ["k:sig"],
      },
    ]);
    const [info] = parsePathInfoJson(text);
    expect(info?.path).toBe(TOP);
    expect(info?.narHash.format("nix32")).toBe(
      "sha256:1jv5qlsi9wc270h1m3hz9q0qizbb5vfwniwg55sdj348sj8s8g8b",
    );
    expect(info?.references).toEqual([DEP]);
    expect(info?.deriver).toBe("m6q88a42916jh93iyfpnj924svi6q8ln-top.drv");
    expect(info?.sigs).toEqual(["k:sig"]);
  });

  it("reads the object form of newer Nix, keyed by path", () => {
    const text = JSON.stringify({
      [DEP]: {
        narHash: "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
        narSize: 120,
        references: [],
      },
    });
    expect(parsePathInfoJson(text)).toMatchObject([{ path: DEP, narSize: 120, references: [] }]);
  });

  it("names a path that is not valid", () => {
    expect(() => parsePathInfoJson(JSON.stringify({ [DEP]: null }))).toThrow(
      `'${DEP}' is not a valid path in the local Nix store`,
    );
    expect(() => parsePathInfoJson(JSON.stringify([{ path: DEP, valid: false }]))).toThrow(
      /not a valid path/,
    );
  });
});

describe("parseBuiltDerivations", () => {
  const v226 = { text: "nix (Nix) 2.26.3", major: 2, minor: 26, patch: 3 };
  const DRV = "/nix/store/9qfmzjvy03p1rkp6r89lqzanjhmc18sx-example-web-system-v1.drv";
  const OUT = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1";

  it("reads each derivation's outputs (extra fields such as startTime are ignored)", () => {
    const text = JSON.stringify([{ drvPath: DRV, outputs: { out: OUT }, startTime: 1 }]);
    expect(parseBuiltDerivations(text, v226)).toEqual([{ drvPath: DRV, outputs: { out: OUT } }]);
  });

  it("names the Nix when an entry has no outputs (a bare .drv built as the file itself)", () => {
    expect(() => parseBuiltDerivations(JSON.stringify([DRV]), v226)).toThrow(
      `nix (Nix) 2.26.3 answered 'nix build --json' with an entry that names no built outputs: "${DRV}"`,
    );
    expect(() =>
      parseBuiltDerivations(JSON.stringify([{ drvPath: DRV, outputs: {} }]), v226),
    ).toThrow(/names no built outputs/);
  });
});
