// `deploy --help` and `plan --help` name every flag the command accepts in their usage line,
// and deploy's help every event type its --json can print (read from the events' own file).
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { formatPlanDeltas } from "../ui/plan-deltas-format.js";
import { DEPLOY_FLAGS, deployCommand, PLAN_FLAGS, planCommand } from "./deploy.js";

/** The usage line: the help up to its first blank line, as one line of words. */
function usageOf(help: string): string[] {
  return (help.split("\n\n")[0] ?? "").split(/\s+/);
}

/** The ways a usage line may show `--name`: itself, or with its `no-` twin as `--[no-]X`. */
function shown(name: string): string[] {
  const forms = [`[--${name}]`, `[--${name}`];
  const plain = name.startsWith("no-") ? name.slice(3) : name;
  return [...forms, `[--[no-]${plain}]`];
}

describe("deploy --help and plan --help", () => {
  it.each([
    ["deploy", deployCommand.help, DEPLOY_FLAGS],
    ["plan", planCommand.help, PLAN_FLAGS],
  ] as const)("%s's usage line names every flag it accepts", (_, help, flags) => {
    const words = usageOf(help);
    expect(words.slice(0, 3)).toEqual(["Usage:", "nixship", _]);
    for (const name of Object.keys(flags)) {
      expect(
        words.some((w) => shown(name).includes(w)),
        `--${name} in\n${help.split("\n\n")[0]}`,
      ).toBe(true);
    }
    for (const line of (help.split("\n\n")[0] ?? "").split("\n"))
      expect(line.length).toBeLessThanOrEqual(96);
  });

  it("deploy's usage names --no-delta, --require-pinned and --allow-failed", () => {
    const words = usageOf(deployCommand.help);
    for (const w of ["[--no-delta]", "[--require-pinned]", "[--allow-failed]"])
      expect(words).toContain(w);
  });

  it("deploy's help lists every event type deploy can emit", async () => {
    const source = await readFile(new URL("../deploy/events.ts", import.meta.url), "utf8");
    const types = [...source.matchAll(/readonly type: "([a-z-]+)"/g)].map((m) => m[1] as string);
    expect(types).toContain("build-progress");
    expect(types).toContain("deltas-start");
    expect(new Set(types).size).toBe(34);
    const help = deployCommand.help;
    for (const type of types) {
      expect(help, type).toMatch(new RegExp(`(?<![\\w-])${type}(?![\\w-])`));
    }
    const list = help.slice(help.indexOf("of the types:"), help.indexOf("Agent hosts are in"));
    const listed = list
      .replace("of the types:", "")
      .split(/[\s,]+/)
      .filter(Boolean);
    expect([...listed].sort()).toEqual([...new Set(types)].sort());
  });
});

describe("plan --help", () => {
  it("says what the plan shows of deltas: its section, per group of hosts, and what is not known yet", () => {
    const help = planCommand.help.replace(/\s+/g, " ");
    const shown = formatPlanDeltas({
      deltas: {
        hosts: [
          {
            host: "web1",
            paths: 14,
            byDelta: 12,
            pending: 2,
            withDeltas: 3_100_000,
            whole: 41_000_000,
            upperBound: true,
          },
        ],
        pending: 2,
        unread: ["web2"],
        noDelta: [{ host: "web3", reason: "no-zstd" }],
      },
    });
    expect(shown[0]).toMatch(/^deltas \(/);
    expect(help).toContain('a "deltas" section says, per group of hosts that fetch alike');
    expect(shown.join("\n")).toContain("12 by delta: at most");
    expect(help).toContain("how many by delta");
    expect(help).toContain('"at most" for paths not pushed yet');
    expect(shown.join("\n")).toContain("not computed yet");
    expect(help).toContain("deltas not computed yet count whole");
    expect(shown.join("\n")).toContain("web2: running closure not read, fetches whole");
    expect(help).toContain("hosts whose running closure could not be read fetch whole");
    expect(shown.join("\n")).toContain("no delta for web3: no zstd");
    expect(help).toContain("hosts that get no delta are named with why (no zstd");
    expect(shown[0]).toContain("compressed");
    expect(help).toContain(
      "compressed as the cache holds them (the transfer column counts the NARs, uncompressed",
    );
    expect(help).toContain('--json: the plan\'s "deltas"');
  });
});
