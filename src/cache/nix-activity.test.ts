import { describe, expect, it } from "vitest";
import { type BuildProgress, drvName, NixActivity } from "./nix-activity.js";

// Lines as Nix 2.8 writes them with --log-format internal-json (trimmed to what is read).
const DRV = "/nix/store/43m4pdv0dymplrhymwhpsnx0y468m71j-slow-a.drv";
const nix = (o: object) => `@nix ${JSON.stringify(o)}`;
const LINES = [
  nix({ action: "start", id: 9, level: 0, text: "", type: 104 }),
  nix({ action: "result", fields: [0, 2, 0, 0], id: 9, type: 105 }),
  nix({
    action: "start",
    fields: [DRV, "", 1, 1],
    id: 13,
    level: 3,
    text: `building '${DRV}'`,
    type: 105,
  }),
  nix({ action: "result", fields: [0, 2, 1, 0], id: 9, type: 105 }),
  nix({ action: "result", fields: ["first line"], id: 13, type: 101 }),
  nix({ action: "result", fields: ["\u001b[31mlast line\u001b[0m"], id: 13, type: 101 }),
  nix({
    action: "msg",
    level: 0,
    msg: `\u001b[31;1merror:\u001b[0m builder for '\u001b[35;1m${DRV}\u001b[0m' failed with exit code 3`,
  }),
  nix({ action: "stop", id: 13 }),
  nix({ action: "result", fields: [0, 2, 0, 1], id: 9, type: 105 }),
];

describe("Nix's internal-json log", () => {
  it("gives its words as plain lines, a failed build's last log lines after its error", () => {
    const text: string[] = [];
    const activity = new NixActivity((l) => text.push(l));
    for (const line of LINES) activity.add(line);
    expect(text).toEqual([
      `building '${DRV}'`,
      `error: builder for '${DRV}' failed with exit code 3`,
      "       last 2 log lines:",
      "       > first line",
      "       > last line",
    ]);
    expect(activity.tail(3)).toEqual(text.slice(-3));
  });

  it("follows builds: what runs, since when, and Nix's counts", () => {
    const seen: BuildProgress[] = [];
    let clock = 1000;
    const activity = new NixActivity(
      () => {},
      (p) => seen.push(p),
      () => clock,
    );
    for (const line of LINES.slice(0, 4)) activity.add(line);
    expect(activity.progress()).toEqual({
      done: 0,
      expected: 2,
      failed: 0,
      running: [{ drv: DRV, name: "slow-a", machine: undefined, since: 1000 }],
    });
    clock = 5000;
    for (const line of LINES.slice(4)) activity.add(line);
    expect(activity.progress()).toEqual({ done: 0, expected: 2, failed: 1, running: [] });
    expect(seen.map((p) => p.running.length)).toEqual([0, 1, 0, 0]);
  });

  it("names a build on another machine, and passes anything else on as it is", () => {
    const text: string[] = [];
    const activity = new NixActivity((l) => text.push(l));
    const on = `building '${DRV}' on 'ssh-ng://root@b1'`;
    activity.add(
      nix({ action: "start", fields: [DRV, "ssh-ng://root@b1", 1, 1], id: 1, text: on, type: 105 }),
    );
    activity.add("ssh: connect to host b2 port 22: Connection refused");
    activity.add("@nix {not json");
    expect(text).toEqual([
      on,
      "ssh: connect to host b2 port 22: Connection refused",
      "@nix {not json",
    ]);
    expect(activity.progress().running[0]?.machine).toBe("ssh-ng://root@b1");
  });

  it("stays bounded whatever Nix sends", () => {
    const activity = new NixActivity(() => {});
    for (let id = 0; id < 5000; id++) {
      activity.add(
        nix({
          action: "start",
          fields: [`/nix/store/${"a".repeat(32)}-p${id}.drv`, "", 1, 1],
          id,
          text: "",
          type: 105,
        }),
      );
      for (let i = 0; i < 25; i++)
        activity.add(nix({ action: "result", fields: ["x".repeat(1000)], id, type: 101 }));
    }
    expect(activity.progress().running.length).toBeLessThanOrEqual(4096);
    expect(activity.logOf(`/nix/store/${"a".repeat(32)}-p4999.drv`)).toHaveLength(20);
    expect(activity.logOf(`/nix/store/${"a".repeat(32)}-p0.drv`)).toHaveLength(0);
    expect(activity.logOf(`/nix/store/${"a".repeat(32)}-p4999.drv`)[0]?.length).toBeLessThanOrEqual(
      301,
    );
  });

  it("names a derivation by its store name", () => {
    expect(drvName(DRV)).toBe("slow-a");
  });
});
