// The helpers of bench:delta's link and CPU measures: the tc rules that hold a lab host's link
// (its rate both ways, and their removal), the relay that adds its delay (every byte passes, in
// order, past its bound on bytes held), and the rusage line the measuring wrapper writes.
import { randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { startDelayRelay } from "../bench/delay-relay.js";
import { parseRusage } from "../bench/delta-engines.js";
import { shapeCommands } from "../bench/delta-link.js";

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
