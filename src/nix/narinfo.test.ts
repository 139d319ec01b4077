import { describe, expect, it } from "vitest";
import { Sha256 } from "./hash.js";
import { generateSecretKey, parsePublicKey, publicKeyOf } from "./keys.js";
import {
  checkNarInfoSignatures,
  fingerprint,
  formatNarInfo,
  parseNarInfo,
  signNarInfo,
} from "./narinfo.js";

// Written by `nix copy --to file://…?secret-key=…` (Nix 2.8) with the key test-1 below.
const NIX_WRITTEN = `StorePath: /nix/store/v3qa92fkaaak650aj0sxddibnb2xa5hc-top
URL: nar/1smsrmxsbqlyazn71s71fqiz63f07snm6ip9hrfj6yqramgbwmhc.nar.zst
Compression: zstd
FileHash: sha256:1smsrmxsbqlyazn71s71fqiz63f07snm6ip9hrfj6yqramgbwmhc
FileSize: 277
NarHash: sha256:1jv5qlsi9wc270h1m3hz9q0qizbb5vfwniwg55sdj348sj8s8g8b
NarSize: 968
References: 62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep
Deriver: m6q88a42916jh93iyfpnj924svi6q8ln-top.drv
Sig: test-1:wrzp8ibi//6XCZK5oX+KTnL27iLoTENGAI8nIVF1xZnZE34YyzpLkDng4l6nd7RXpXq7edqkkEN598yNysbXAA==
`;
const NIX_KEY = parsePublicKey("test-1:gg+Ac3acg1MrhtcaQbc+nJHt6RomHydolRU4aAZWcPo=");

describe("narinfo", () => {
  it("parses Nix's narinfo and writes it back byte for byte", () => {
    const info = parseNarInfo(NIX_WRITTEN);
    expect(info.references).toEqual(["/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep"]);
    expect(info.narSize).toBe(968);
    expect(formatNarInfo(info)).toBe(NIX_WRITTEN);
  });

  it("has Nix's fingerprint and accepts Nix's signature", () => {
    const info = parseNarInfo(NIX_WRITTEN);
    expect(fingerprint(info)).toBe(
      "1;/nix/store/v3qa92fkaaak650aj0sxddibnb2xa5hc-top;sha256:1jv5qlsi9wc270h1m3hz9q0qizbb5vfwniwg55sdj348sj8s8g8b;968;/nix/store/62zx2hw8gp9dzf022s6cibdx2pl0v9dx-dep",
    );
    expect(checkNarInfoSignatures(info, [NIX_KEY])).toEqual({ ok: true, keyName: "test-1" });
  });

  it("ends a fingerprint with ';' when there are no references", () => {
    const info = { ...parseNarInfo(NIX_WRITTEN), references: [] };
    expect(fingerprint(info).endsWith(";968;")).toBe(true);
  });

  it("rejects a tampered narinfo and an untrusted key", () => {
    const info = parseNarInfo(NIX_WRITTEN);
    const tampered = { ...info, narSize: 969 };
    expect(checkNarInfoSignatures(tampered, [NIX_KEY])).toEqual({
      ok: false,
      problems: ["signature by 'test-1' does not match the narinfo's contents"],
    });
    const stranger = publicKeyOf(generateSecretKey("test-1"));
    expect(checkNarInfoSignatures(info, [stranger]).ok).toBe(false);
    expect(checkNarInfoSignatures({ ...info, sigs: [] }, [NIX_KEY])).toEqual({
      ok: false,
      problems: ["it has no signatures"],
    });
  });

  it("signs with our key in a way our verifier and the fingerprint agree on", () => {
    const key = generateSecretKey("ours-1");
    const signed = signNarInfo(parseNarInfo(NIX_WRITTEN), key);
    expect(signed.sigs).toHaveLength(2);
    expect(checkNarInfoSignatures(signed, [publicKeyOf(key)])).toEqual({
      ok: true,
      keyName: "ours-1",
    });
  });

  it("ignores unknown keys and defaults Compression to bzip2", () => {
    const text = NIX_WRITTEN.replace("Compression: zstd\n", "").concat("X-Unknown: 1\n");
    expect(parseNarInfo(text).compression).toBe("bzip2");
  });

  it("keeps the lines of keys it does not model, and writes them back where Nix writes System", () => {
    // As Hydra writes it: System after Deriver; and another writer's own key at the end.
    const text = NIX_WRITTEN.replace(
      "Deriver: m6q88a42916jh93iyfpnj924svi6q8ln-top.drv\n",
      "Deriver: m6q88a42916jh93iyfpnj924svi6q8ln-top.drv\nSystem: x86_64-linux\n",
    ).concat("X-Pushed-By: ci-42\n");
    const info = parseNarInfo(text);
    expect(info.extra).toEqual([
      ["System", "x86_64-linux"],
      ["X-Pushed-By", "ci-42"],
    ]);
    const written = formatNarInfo(info);
    expect(written).toContain(
      "Deriver: m6q88a42916jh93iyfpnj924svi6q8ln-top.drv\nSystem: x86_64-linux\nX-Pushed-By: ci-42\nSig: ",
    );
    expect(parseNarInfo(written)).toEqual(info);
    // Nix's own narinfo has none, and is written back byte for byte (above).
    expect(parseNarInfo(NIX_WRITTEN).extra).toBeUndefined();
  });

  it.each([
    ["no final newline", NIX_WRITTEN.slice(0, -1), /last line does not end in a newline/],
    ["no StorePath", NIX_WRITTEN.replace(/^StorePath.*\n/, ""), /missing required key StorePath/],
    ["no URL", NIX_WRITTEN.replace(/^URL.*\n/m, ""), /missing required key URL/],
    ["no NarHash", NIX_WRITTEN.replace(/^NarHash.*\n/m, ""), /missing required key NarHash/],
    [
      "zero NarSize",
      NIX_WRITTEN.replace("NarSize: 968", "NarSize: 0"),
      /NarSize must be greater than 0/,
    ],
    [
      "text NarSize",
      NIX_WRITTEN.replace("NarSize: 968", "NarSize: x"),
      /NarSize 'x' is not a number/,
    ],
    ["bad hash", NIX_WRITTEN.replace(/NarHash: .*/, "NarHash: sha256:zz"), /NarHash: 'sha256:zz'/],
    ["bad line", NIX_WRITTEN.concat("garbage\n"), /line 11: expected 'Key: value'/],
    [
      "escaping URL",
      NIX_WRITTEN.replace(/URL: .*/, "URL: ../x.nar"),
      /relative path inside the cache/,
    ],
    [
      "bad reference",
      NIX_WRITTEN.replace(/References: .*/, "References: nope"),
      /reference 'nope'|reference '\/nix\/store\/nope'/,
    ],
    [
      "bad compression",
      NIX_WRITTEN.replace("Compression: zstd", "Compression: lz4"),
      /unsupported Compression 'lz4'/,
    ],
  ])("rejects %s", (_label, text, message) => {
    expect(() => parseNarInfo(text, "abc.narinfo")).toThrow(message);
  });

  it("keeps the hash forms it is given in canonical nix32", () => {
    const info = parseNarInfo(
      NIX_WRITTEN.replace(/NarHash: .*/, `NarHash: ${Sha256.of("x").format("sri")}`),
    );
    expect(formatNarInfo(info)).toContain(`NarHash: ${Sha256.of("x").format("nix32")}\n`);
  });
});
