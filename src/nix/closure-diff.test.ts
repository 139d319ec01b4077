import { describe, expect, it } from "vitest";
import {
  type ClosureDiff,
  type ClosurePath,
  compareVersions,
  diffClosures,
  formatClosureDiff,
  formatClosureDiffSummary,
  groupByChange,
  parseDrvName,
  parsePackageName,
} from "./closure-diff.js";
import { parseStorePath, type StorePath } from "./store-path.js";

const NIX32 = "0123456789abcdfghijklmnpqrsvwxyz";

/** A valid store path; `build` picks its hash, so a name built again gets another path. */
const sp = (name: string, build = 0): StorePath =>
  parseStorePath(`/nix/store/${(NIX32[build] ?? "0").repeat(32)}-${name}`).path;
const entry = (name: string, narSize: number, build = 0): ClosurePath => ({
  path: sp(name, build),
  narSize,
});

const MiB = 1024 * 1024;

describe("parseDrvName", () => {
  // Each expectation checked against `nix-instantiate --eval` of builtins.parseDrvName.
  it.each([
    ["openssl-3.0.13", "openssl", "3.0.13"],
    ["hello-2.12.1", "hello", "2.12.1"],
    ["gtk+3-3.24.41", "gtk+3", "3.24.41"],
    ["nixos-system-web-24.11pre-git", "nixos-system-web", "24.11pre-git"],
    ["etc", "etc", ""],
    ["python3.11-requests-2.31.0", "python3.11-requests", "2.31.0"],
    ["source", "source", ""],
    ["linux-6.6.30-modules", "linux", "6.6.30-modules"],
    ["foo-dev", "foo-dev", ""],
    ["foo-", "foo-", ""],
    ["a-.1", "a", ".1"],
    ["x-_y", "x", "_y"],
  ])("splits %s into (%s, %s)", (storeName, name, version) => {
    expect(parseDrvName(storeName)).toEqual({ name, version });
  });
});

describe("parsePackageName", () => {
  it.each(["dev", "bin", "man", "lib", "doc", "debug", "static", "info", "devdoc"])(
    "takes the output suffix -%s off the version",
    (output) => {
      expect(parsePackageName(`openssl-3.0.13-${output}`)).toEqual({
        name: "openssl",
        version: "3.0.13",
        output,
      });
    },
  );

  it.each([
    ["openssl-3.0.13", "openssl", "3.0.13"],
    ["linux-6.6.30-modules", "linux", "6.6.30-modules"],
    ["hello-2.12.1-out", "hello", "2.12.1-out"],
    ["foo-dev", "foo-dev", ""],
    ["etc", "etc", ""],
    // A suffix that would leave no version stays the version.
    ["foo--dev", "foo", "-dev"],
  ])("leaves %s as (%s, %s) with no output", (storeName, name, version) => {
    expect(parsePackageName(storeName)).toEqual({ name, version, output: undefined });
  });
});

describe("compareVersions", () => {
  // Each expectation checked against `nix-instantiate --eval` of builtins.compareVersions.
  it.each([
    ["1.10", "1.9", 1],
    ["3.0.14", "3.0.13", 1],
    ["1.0pre1", "1.0", -1],
    // Nix's own quirk: only "pre" sorts before a release; "rc1" sorts after it.
    ["2.0-rc1", "2.0", 1],
    ["2.0pre1", "2.0rc1", -1],
    ["1.0", "1.0a", -1],
    ["1.0pre", "1.0a", -1],
    ["1.0", "1.0.1", -1],
    ["1.0.0", "1.0", 1],
    ["2.3a", "2.3.1", -1],
    ["1.0", "1.0", 0],
    ["1.01", "1.1", 0],
    ["1.0-", "1.0", 0],
    ["a", "b", -1],
    ["B", "a", -1],
    ["", "1", -1],
    ["", "", 0],
    ["24.11pre-git", "24.11", -1],
    ["6.6.30-modules", "6.6.30", 1],
    ["0.1.1+date=2023-03-02", "0.1.1", 1],
    // Past a C int, Nix compares a number as text, and text sorts before a number.
    ["99999999999999999999", "3", -1],
  ] as const)("compares %s with %s as %i, and back", (a, b, order) => {
    expect(compareVersions(a, b)).toBe(order);
    expect(compareVersions(b, a)).toBe(order === 0 ? 0 : -order);
  });

  it("sorts versions oldest first", () => {
    const versions = ["1.10", "1.0", "1.0pre1", "1.9", "1.0.1", "1.0rc1"];
    expect(versions.sort(compareVersions)).toEqual([
      "1.0pre1",
      "1.0",
      "1.0rc1",
      "1.0.1",
      "1.9",
      "1.10",
    ]);
  });
});

describe("diffClosures", () => {
  it("shows one version change and nothing else", () => {
    const current = [entry("hello-2.12.1", 1000), entry("openssl-3.0.13", 5000), entry("etc", 200)];
    const desired = [entry("hello-2.12.1", 1000), entry("openssl-3.0.14", 5100), entry("etc", 200)];
    expect(diffClosures(current, desired)).toEqual({
      changed: [
        { name: "openssl", before: ["3.0.13"], after: ["3.0.14"], sizeDelta: 100, kind: "upgrade" },
      ],
      added: [],
      removed: [],
      rebuilt: 0,
      sizeBefore: 6200,
      sizeAfter: 6300,
    });
  });

  it("lists packages added and removed with their sizes, sorted by name", () => {
    const current = [entry("zsh-5.9", 300), entry("bar-2.1", 20), entry("baz-0.5", 30)];
    const desired = [entry("zsh-5.9", 300), entry("foo-1.0", 70), entry("etc", 5)];
    const diff = diffClosures(current, desired);
    expect(diff.changed).toEqual([]);
    expect(diff.added).toEqual([
      { name: "etc", versions: [""], size: 5 },
      { name: "foo", versions: ["1.0"], size: 70 },
    ]);
    expect(diff.removed).toEqual([
      { name: "bar", versions: ["2.1"], size: 20 },
      { name: "baz", versions: ["0.5"], size: 30 },
    ]);
    expect([diff.sizeBefore, diff.sizeAfter]).toEqual([350, 375]);
  });

  it("keeps a package's outputs as one package", () => {
    const desired = [
      entry("openssl-3.0.13", 1000),
      entry("openssl-3.0.13-dev", 200),
      entry("openssl-3.0.13-man", 50),
      entry("openssl-3.0.13-bin", 7),
    ];
    expect(diffClosures([], desired).added).toEqual([
      { name: "openssl", versions: ["3.0.13"], size: 1257 },
    ]);
  });

  it("keeps every version of a package, sorted as versions", () => {
    const current = [entry("python3-3.11.9", 50), entry("python3-3.9.18", 40)];
    const desired = [entry("python3-3.11.9", 50)];
    expect(diffClosures(current, desired).changed).toEqual([
      {
        name: "python3",
        before: ["3.9.18", "3.11.9"],
        after: ["3.11.9"],
        sizeDelta: -40,
        kind: "change",
      },
    ]);
  });

  it("tells a downgrade from an upgrade by the newest version", () => {
    const diff = diffClosures(
      [entry("zlib-1.3.1", 100), entry("curl-8.7.1", 10)],
      [entry("zlib-1.3", 90), entry("curl-8.7.1", 10), entry("curl-8.8.0", 11)],
    );
    expect(diff.changed.map((c) => [c.name, c.kind])).toEqual([
      ["curl", "upgrade"],
      ["zlib", "downgrade"],
    ]);
  });

  it("counts a rebuild with the same version in rebuilt only", () => {
    const current = [entry("nixos-system-web-24.11pre-git", 10, 0), entry("hello-2.12.1", 5, 0)];
    const desired = [entry("nixos-system-web-24.11pre-git", 12, 1), entry("hello-2.12.1", 5, 0)];
    expect(diffClosures(current, desired)).toEqual({
      changed: [],
      added: [],
      removed: [],
      rebuilt: 1,
      sizeBefore: 15,
      sizeAfter: 17,
    });
  });

  it("counts a path listed twice once", () => {
    const diff = diffClosures([entry("hello-2.12.1", 5), entry("hello-2.12.1", 5)], []);
    expect(diff.sizeBefore).toBe(5);
    expect(diff.removed).toEqual([{ name: "hello", versions: ["2.12.1"], size: 5 }]);
  });

  it("finds nothing between equal closures", () => {
    const closure = [entry("hello-2.12.1", 5), entry("etc", 1)];
    expect(diffClosures(closure, [...closure].reverse())).toEqual({
      changed: [],
      added: [],
      removed: [],
      rebuilt: 0,
      sizeBefore: 6,
      sizeAfter: 6,
    });
  });

  it("diffs closures of tens of thousands of paths", () => {
    const current: ClosurePath[] = [];
    const desired: ClosurePath[] = [];
    for (let i = 0; i < 20_000; i++) {
      const bumped = i % 10 === 0 ? 1 : 0;
      current.push(entry(`pkg${i}-1.0`, 10), entry(`pkg${i}-1.0-dev`, 1));
      desired.push(entry(`pkg${i}-1.${bumped}`, 10), entry(`pkg${i}-1.${bumped}-dev`, 1));
    }
    const diff = diffClosures(current, desired);
    expect(diff.changed).toHaveLength(2000);
    expect(diff.changed[0]).toEqual({
      name: "pkg0",
      before: ["1.0"],
      after: ["1.1"],
      sizeDelta: 0,
      kind: "upgrade",
    });
    expect([diff.added.length, diff.removed.length, diff.rebuilt]).toEqual([0, 0, 0]);
    expect(diff.sizeAfter).toBe(220_000);
  });
});

/** A system update: 3 version changes, 1 package added, 2 removed, 2 rebuilt, +1.2 MiB. */
const SYSTEM_UPDATE = diffClosures(
  [
    entry("nixos-system-web-24.11pre-git", 10_000, 0),
    entry("etc", 5_000, 0),
    entry("openssl-3.0.13", 6_000_000),
    entry("openssl-3.0.13-dev", 1_000_000),
    entry("zlib-1.3.1", 100_000),
    entry("python3-3.11.9", 50_000_000),
    entry("python3-3.12.4", 60_000_000),
    entry("bar-2.1", 20_000),
    entry("baz-0.5", 30_000),
  ],
  [
    entry("nixos-system-web-24.11pre-git", 10_000, 1),
    entry("etc", 5_000, 1),
    entry("openssl-3.0.14", 6_100_000),
    entry("openssl-3.0.14-dev", 1_000_000),
    entry("zlib-1.3", 90_000),
    entry("python3-3.12.4", 60_000_000),
    entry("foo-1.0", 51_218_291),
  ],
);

describe("formatClosureDiffSummary", () => {
  it("names at most the given number of changed packages", () => {
    expect(SYSTEM_UPDATE.sizeAfter - SYSTEM_UPDATE.sizeBefore).toBe(Math.round(1.2 * MiB));
    expect(formatClosureDiffSummary(SYSTEM_UPDATE, 1)).toBe(
      "3 changed (openssl 3.0.13 → 3.0.14, …), 1 added, 2 removed, 2 rebuilt, +1.2 MiB",
    );
    expect(formatClosureDiffSummary(SYSTEM_UPDATE)).toBe(
      "3 changed (openssl 3.0.13 → 3.0.14, python3 3.11.9/3.12.4 → 3.12.4, zlib 1.3.1 → 1.3), " +
        "1 added, 2 removed, 2 rebuilt, +1.2 MiB",
    );
    expect(formatClosureDiffSummary(SYSTEM_UPDATE, 0)).toBe(
      "3 changed, 1 added, 2 removed, 2 rebuilt, +1.2 MiB",
    );
  });

  it("shows one version change alone", () => {
    const diff = diffClosures([entry("openssl-3.0.13", 5000)], [entry("openssl-3.0.14", 5100)]);
    expect(formatClosureDiffSummary(diff)).toBe("1 changed (openssl 3.0.13 → 3.0.14), +100 B");
  });

  it("leaves out counts that are 0, and says when nothing changes", () => {
    const removal = diffClosures([entry("bar-2.1", 512), entry("etc", 1)], [entry("etc", 1)]);
    expect(formatClosureDiffSummary(removal)).toBe("1 removed, -512 B");
    const addition = diffClosures([], [entry("firmware-2024", 3 * 1024 * MiB)]);
    expect(formatClosureDiffSummary(addition)).toBe("1 added, +3.0 GiB");
    const rebuild = diffClosures([entry("etc", 1, 0)], [entry("etc", 1, 1)]);
    expect(formatClosureDiffSummary(rebuild)).toBe("no version changes, 1 rebuilt, ±0 B");
    const same = diffClosures([entry("etc", 1)], [entry("etc", 1)]);
    expect(formatClosureDiffSummary(same)).toBe("no changes");
  });
});

describe("formatClosureDiff", () => {
  it("prints one package a line, then the rebuilt count and the closure size", () => {
    expect(formatClosureDiff(SYSTEM_UPDATE)).toBe(
      [
        "[U] openssl 3.0.13 → 3.0.14",
        "[C] python3 3.11.9, 3.12.4 → 3.12.4",
        "[D] zlib 1.3.1 → 1.3",
        "[A] foo 1.0",
        "[R] bar 2.1",
        "[R] baz 0.5",
        "2 packages rebuilt with the same version",
        "Closure size: 111.7 MiB → 112.9 MiB (+1.2 MiB)",
      ].join("\n"),
    );
  });

  it("shows a missing version as nvd does", () => {
    const diff = diffClosures(
      [entry("etc", 10), entry("dbus-1", 3)],
      [entry("dbus", 3), entry("unit-script", 2)],
    );
    expect(formatClosureDiff(diff)).toBe(
      ["[C] dbus 1 → <none>", "[A] unit-script", "[R] etc", "Closure size: 13 B → 5 B (-8 B)"].join(
        "\n",
      ),
    );
  });

  it("says when no version changes", () => {
    const rebuild = diffClosures([entry("etc", 2048, 0)], [entry("etc", 2048, 1)]);
    expect(formatClosureDiff(rebuild)).toBe(
      [
        "No version changes.",
        "1 package rebuilt with the same version",
        "Closure size: 2.0 KiB → 2.0 KiB (±0 B)",
      ].join("\n"),
    );
  });
});

describe("groupByChange", () => {
  const update = (): ClosureDiff =>
    diffClosures([entry("openssl-3.0.13", 5000)], [entry("openssl-3.0.14", 5100)]);
  const other = (): ClosureDiff => diffClosures([entry("bar-2.1", 1)], []);

  it("groups hosts whose diffs are equal, in first-seen order", () => {
    const web1 = update();
    const db1 = other();
    const groups = groupByChange([
      { host: "web1", diff: web1 },
      { host: "db1", diff: db1 },
      { host: "web2", diff: update() },
      { host: "db2", diff: other() },
      { host: "web3", diff: update() },
    ]);
    expect(groups).toEqual([
      { hosts: ["web1", "web2", "web3"], diff: web1 },
      { hosts: ["db1", "db2"], diff: db1 },
    ]);
    expect(groups[0]?.diff).toBe(web1);
  });

  it("prints 200 identical hosts as one diff", () => {
    const hosts = Array.from({ length: 200 }, (_, i) => ({ host: `web${i}`, diff: update() }));
    const groups = groupByChange(hosts);
    expect(groups).toHaveLength(1);
    expect(groups[0]?.hosts).toHaveLength(200);
  });

  it("keeps diffs that differ only in size apart", () => {
    const bigger = diffClosures([entry("openssl-3.0.13", 5000)], [entry("openssl-3.0.14", 5200)]);
    const groups = groupByChange([
      { host: "a", diff: update() },
      { host: "b", diff: bigger },
    ]);
    expect(groups.map((g) => g.hosts)).toEqual([["a"], ["b"]]);
  });

  it("returns no groups for no hosts", () => {
    expect(groupByChange([])).toEqual([]);
  });
});
