// The helpers of bench:delta's link and CPU measures: the tc rules that hold a lab host's link
// (its rate both ways, and their removal), the relay that adds its delay (every byte passes, in
// order, past its bound on bytes held), the rusage line the measuring wrapper writes, and the
// deploys' medians and targets.
import { randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { startDelayRelay } from "../bench/delay-relay.js";
import { type DeployRun, deployMedians } from "../bench/delta-deploy.js";
import { parseRusage } from "../bench/delta-engines.js";
import {
  COPY_WAY,
  DELTA_WAY,
  type LinkRun,
  linkMedians,
  shapeCommands,
} from "../bench/delta-link.js";

describe("shapeCommands", () => {
  it("holds the veth toward the host and the host's eth0 to the rate, and takes both off", () => {
    const { add, del } = shapeCommands("nxs3v1", "nxs3-ab12-dlk1", 50);
    const tbf = "tbf rate 50mbit burst 64kb latency 50ms";
    expect(add).toEqual([
      `tc qdisc replace dev nxs3v1 root ${tbf}`.split(" "),
      `ip netns exec nxs3-ab12-dlk1 tc qdisc replace dev eth0 root ${tbf}`.split(" "),
    ]);
    expect(del).toEqual([
      "tc qdisc del dev nxs3v1 root".split(" "),
      "ip netns exec nxs3-ab12-dlk1 tc qdisc del dev eth0 root".split(" "),
    ]);
  });
});

describe("startDelayRelay", () => {
  it("passes every byte both ways in order, more than its in-flight bound, and the ends", async () => {
    // An echo server that answers each connection's bytes, then ends when the client ends.
    const echo = createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((done) => echo.listen(0, "127.0.0.1", done));
    const relay = await startDelayRelay(
      "127.0.0.1",
      { host: "127.0.0.1", port: (echo.address() as AddressInfo).port },
      2,
    );
    try {
      const sent = randomBytes(9 * 1024 * 1024);
      const [host, port] = relay.address.split(":");
      const client = connect(Number(port), host);
      const got: Buffer[] = [];
      const ended = new Promise<void>((done) => client.on("end", done));
      client.on("data", (d: Buffer) => got.push(d));
      for (let at = 0; at < sent.length; at += 100_000)
        client.write(sent.subarray(at, at + 100_000));
      client.end();
      await ended;
      expect(Buffer.concat(got).equals(sent)).toBe(true);
    } finally {
      await relay.close();
      await new Promise<void>((done) => echo.close(() => done()));
    }
  });
});

describe("parseRusage", () => {
  it("reads wall seconds, user + system CPU seconds and the peak RSS in KiB", () => {
    expect(parseRusage("12.500000 3.250000 0.750000 2048\n")).toEqual({
      wallSeconds: 12.5,
      cpuSeconds: 4,
      peakRssBytes: 2048 * 1024,
    });
  });

  it("refuses a line that is not four numbers, quoting it", () => {
    expect(() => parseRusage("")).toThrow("not a rusage line (wall user sys maxrss): ''");
    expect(() => parseRusage("1.0 2.0 x 4")).toThrow("'1.0 2.0 x 4'");
    expect(() => parseRusage("1 2 3")).toThrow("not a rusage line");
  });
});

describe("deployMedians", () => {
  const run = (
    link: string,
    way: "deltas" | "whole",
    wallSeconds: number,
    machineCpuSeconds = 1,
  ): DeployRun => ({
    corpus: "mass rebuild 250 MB",
    link,
    hosts: 1,
    way,
    wallSeconds,
    deployerCpuSeconds: 1,
    machineCpuSeconds,
    linkBytes: 1,
    byDelta: 0,
    whole: 0,
    load: 0,
  });
  const slow = "10 Mbit/s, 50 ms";

  it("gives each case's medians and ratio, again without each link's first deploy, and judges the targets", () => {
    const lines = deployMedians(
      [
        // The first deploy over the slow link judged it by the setup's loopback deploy.
        run(slow, "deltas", 80),
        run(slow, "whole", 79),
        run(slow, "deltas", 8),
        run(slow, "whole", 81),
        run(slow, "deltas", 7),
        run("50 Mbit/s, 20 ms", "deltas", 9, 10),
        run("50 Mbit/s, 20 ms", "whole", 20),
        run("loopback", "deltas", 9),
        run("loopback", "whole", 5),
        run("loopback", "deltas", 5.4),
        { ...run("loopback", "whole", 1), failed: "a host failed" },
      ],
      2,
    );
    expect(lines).toEqual([
      "Medians by case (with deltas / --no-delta, walls in seconds):",
      "  mass rebuild 250 MB, 10 Mbit/s, 50 ms, 1 host(s): 8.0 (3 runs, 7.0-80.0) / 80.0 (2): 10.00x faster; after each link's first: 7.5 (2), 10.67x",
      "  mass rebuild 250 MB, 50 Mbit/s, 20 ms, 1 host(s): 9.0 (1 run, 9.0-9.0) / 20.0 (1): 2.22x faster",
      "  mass rebuild 250 MB, loopback, 1 host(s): 7.2 (2 runs, 5.4-9.0) / 5.0 (1): 0.69x faster; after each link's first: 5.4 (1), 0.93x",
      "Deploy targets (printed, not asserted):",
      "  MET   mass rebuild 250 MB, 10 Mbit/s, 50 ms, 1 host(s): >= 10x faster than --no-delta (medians, after each link's first): 10.67x",
      "  MISS  mass rebuild 250 MB, 50 Mbit/s, 20 ms, 1 host(s): >= 5x faster than --no-delta (medians): 2.22x",
      "        the machine's CPU in those deploys with deltas: 10.0 s (median), at least 5.0 s of wall on 2 cores; the target asks for at most 4.0 s: out of reach on this machine's cores",
      "  MET   mass rebuild 250 MB, loopback, 1 host(s): at most 1.1x slower than --no-delta (medians, after each link's first): 0.93x",
    ]);
  });

  it("says a missed target's floor from the machine's CPU, out of reach only when over the target", () => {
    const link = "50 Mbit/s, 20 ms";
    // One deploy first over loopback: the slow link's first deploy is left out of its medians.
    const first = [run("loopback", "deltas", 5), run("loopback", "whole", 5)];
    const lines = deployMedians(
      [
        ...first,
        run(link, "deltas", 30, 100),
        run(link, "deltas", 9, 7),
        run(link, "deltas", 8, 6),
        run(link, "deltas", 10, 9),
        run(link, "whole", 20),
      ],
      3,
    );
    expect(lines.slice(-2)).toEqual([
      "  MISS  mass rebuild 250 MB, 50 Mbit/s, 20 ms, 1 host(s): >= 5x faster than --no-delta (medians, after each link's first): 2.22x",
      "        the machine's CPU in those deploys with deltas: 7.0 s (median), at least 2.3 s of wall on 3 cores; the target asks for at most 4.0 s",
    ]);
  });

  it("says when a case ran one way only, and judges no target then", () => {
    expect(deployMedians([run(slow, "deltas", 8), run(slow, "deltas", 9)])).toEqual([
      "Medians by case (with deltas / --no-delta, walls in seconds):",
      "  mass rebuild 250 MB, 10 Mbit/s, 50 ms, 1 host(s): one way only (2 with deltas, 0 without)",
    ]);
  });
});

describe("linkMedians", () => {
  const run = (way: LinkRun["way"], round: number, wallSeconds: number, cpu: number): LinkRun => ({
    way,
    round,
    wallSeconds,
    linkBytes: wallSeconds * 1000,
    hostCpuSeconds: cpu,
  });

  it("takes one way's runs alone and gives the median of each figure and the walls' range", () => {
    const runs = [
      run(COPY_WAY, 1, 2, 1),
      run(DELTA_WAY, 1, 6, 9),
      run(DELTA_WAY, 2, 3, 5),
      run(COPY_WAY, 2, 4, 2),
      run(COPY_WAY, 3, 3, 7),
      run(DELTA_WAY, 3, 4, 6),
      run(DELTA_WAY, 4, 5, 8),
    ];
    expect(linkMedians(runs, COPY_WAY)).toEqual({
      runs: 3,
      wallSeconds: 3,
      minWallSeconds: 2,
      maxWallSeconds: 4,
      hostCpuSeconds: 2,
      linkBytes: 3000,
    });
    expect(linkMedians(runs, DELTA_WAY)).toEqual({
      runs: 4,
      wallSeconds: 4.5,
      minWallSeconds: 3,
      maxWallSeconds: 6,
      hostCpuSeconds: 7,
      linkBytes: 4500,
    });
  });

  it("gives nothing for a way that did not run", () => {
    expect(linkMedians([run(COPY_WAY, 1, 2, 1)], DELTA_WAY)).toBeUndefined();
  });
});
