import { describe, expect, it } from "vitest";
import { keyFingerprint } from "../fleet/known-hosts.js";
import { formatPins, judgePublished, mergePins, parsePins } from "./host-key-pins.js";

const A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd4o8wS1cBqgcvWbUbyIwMfXyWnu5tUrrCy9lZ0yVQE";
const B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRzxm2q8QGoLNTeAOMJ2LnQ8vBbkyTghm0BB+lFTrHL";
const C = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0lEB3kP5zzZgK9BPRZqbDV0UtrF7xLR8bK9o7qJ1Uf";

describe("the pin file", () => {
  it("reads HOST KEY lines, passing over comments and blank lines, and writes them back sorted", () => {
    const pins = parsePins(`# pinned\n\ndb2 ${B} a comment\ndb1 ${A}\n`, "pins");
    expect([...pins]).toEqual([
      ["db2", B],
      ["db1", A],
    ]);
    expect(parsePins(formatPins(pins), "again")).toEqual(
      new Map([
        ["db1", A],
        ["db2", B],
      ]),
    );
    expect(
      formatPins(pins)
        .split("\n")
        .filter((l) => !l.startsWith("#")),
    ).toEqual([`db1 ${A}`, `db2 ${B}`, ""]);
  });

  it("lays new and changed pins into the file, keeping its comments and notes", () => {
    const text = `# pinned by nixship\n# db2 replaced 2026-11-20, checked by alice (INC-4411)\ndb2 ${B} root@db2-new\ndb1 ${A} root@db1\n`;
    const merged = mergePins(
      text,
      new Map([
        ["db1", B],
        ["web2", A],
      ]),
    );
    expect(merged).toBe(
      `# pinned by nixship\n# db2 replaced 2026-11-20, checked by alice (INC-4411)\ndb2 ${B} root@db2-new\ndb1 ${B}\nweb2 ${A}\n`,
    );
    expect(parsePins(merged, "merged")).toEqual(
      new Map([
        ["db2", B],
        ["db1", B],
        ["web2", A],
      ]),
    );
    // A last line without its newline gets one; no file yet: the header and the pins.
    expect(mergePins(`db1 ${A}`, new Map([["db1", B]]))).toBe(`db1 ${B}\n`);
    expect(mergePins(undefined, new Map([["db1", A]]))).toBe(formatPins(new Map([["db1", A]])));
  });

  it("names the line of what is not a pin, and of a host pinned twice", () => {
    expect(() => parsePins(`db1 ${A}\ndb1\n`, "F")).toThrow(
      'F line 2: not "HOST ssh-ed25519 BASE64"',
    );
    expect(() => parsePins(`db1 ${A}\ndb1 ${B}\n`, "F")).toThrow("F line 2: a second pin for db1");
    expect(() => parsePins("db1 ssh-rsa AAAAB3NzaC1yc2E\n", "F")).toThrow(/F line 1/);
    expect(() => parsePins(`../x ${A}\n`, "F")).toThrow(/F line 1/);
  });
});

describe("judgePublished", () => {
  const pins = new Map([
    ["db1", A],
    ["db3", C],
  ]);
  const judged = judgePublished(
    new Map([
      ["db1", B],
      ["db2", B],
      ["db3", undefined],
      ["db4", undefined],
    ]),
    pins,
    "pins",
  );

  it("uses a host's pin before what it published, and a published key no pin names", () => {
    expect(judged.keys).toEqual(
      new Map([
        ["db1", A],
        ["db2", B],
        ["db3", C],
      ]),
    );
    expect(judged.unpinned).toEqual(new Map([["db2", B]]));
  });

  it("names a published key that differs from its pin, with both fingerprints", () => {
    expect(judged.conflicts).toEqual([
      {
        host: "db1",
        where: "pins",
        oldFingerprint: keyFingerprint(A),
        newFingerprint: keyFingerprint(B),
        source: "the store (status/host-keys/db1.pub)",
      },
    ]);
    expect(judged.changed).toEqual(new Map([["db1", B]]));
  });
});
