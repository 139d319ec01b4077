import { describe, expect, it } from "vitest";
import { MasterPool } from "./ssh-master-pool.js";

/**
 * A pool whose "masters" are names: alive from their first place until they are ended; held
 * (`held`) while let go, unless named in `masterless` (their use made no master).
 */
function pool(bound: number, masterless: ReadonlySet<string> = new Set()) {
  const alive = new Set<string>();
  const held = new Set<string>();
  let most = 0;
  const ended: string[] = [];
  const p = new MasterPool(
    bound,
    async (socket) => {
      alive.delete(socket);
      ended.push(socket);
      return { status: "terminated" };
    },
    async (socket) => {
      if (masterless.has(socket) || !alive.has(socket)) return undefined;
      held.add(socket);
      return { close: () => held.delete(socket) };
    },
  );
  const use = async (socket: string, work: () => Promise<void> = async () => {}) => {
    const release = await p.acquire(socket);
    alive.add(socket);
    most = Math.max(most, alive.size);
    try {
      await work();
    } finally {
      release();
    }
  };
  return { p, use, alive, held, ended, most: () => most };
}

describe("the bound on held ssh connections", () => {
  it("keeps at most N masters, ending the one let go most recently to make room", async () => {
    const { p, use, ended, most } = pool(2);
    for (const host of ["a", "b", "c", "a", "d"]) await use(host);
    expect(most()).toBe(2);
    // c ends b (let go last); a is still held; d ends a (let go last now).
    expect(ended).toEqual(["b", "a"]);
    expect(p.stats()).toEqual({ opened: 4, ended: 2, peak: 2 });
  });

  it("a survey, then waves in the same order: only the hosts past the bound connect again", async () => {
    // As a deploy uses them: every host surveyed in order, then every host's wave in order.
    const { p, use } = pool(128);
    const hosts = Array.from({ length: 200 }, (_, i) => `h${i}`);
    for (const host of hosts) await use(host);
    for (const host of hosts) await use(host);
    // 200 first logins, and 72 again (200 - 128): what the plan's connectionsOf counts. Ending
    // the longest idle instead connected all 200 again (bench:fleet: 3 logins a host).
    expect(p.stats()).toMatchObject({ opened: 272, peak: 128 });
  });

  it("a survey that takes places only where there is room ends no master and makes none twice", async () => {
    const { p, use, alive, ended } = pool(128);
    const hosts = Array.from({ length: 200 }, (_, i) => `h${i}`);
    // The survey: a host with room makes its master; one without logs in on its own.
    let alone = 0;
    for (const host of hosts) {
      const release = p.tryAcquire(host);
      if (release === undefined) alone++;
      else alive.add(host);
      release?.();
      await new Promise((r) => setTimeout(r, 0));
    }
    expect(alone).toBe(72);
    expect(p.stats()).toMatchObject({ opened: 128, ended: 0 });
    // The waves: the first 128 use the masters kept; each later host's master is made once,
    // in the place of one whose wave is over.
    for (const host of hosts) await use(host);
    expect(p.stats()).toMatchObject({ opened: 200, ended: 72, peak: 128 });
    expect(new Set(ended).size).toBe(72);
  });

  it("tryAcquire takes a held place or a free one, and never one in use", async () => {
    const { p } = pool(1);
    const a = p.tryAcquire("a");
    expect(a).toBeDefined();
    expect(p.tryAcquire("b")).toBeUndefined();
    const again = p.tryAcquire("a");
    expect(again).toBeDefined();
    again?.();
    a?.();
    // Let go and held, its place is still taken: b gets none, a gets its own again.
    expect(p.tryAcquire("b")).toBeUndefined();
    expect(p.tryAcquire("a")).toBeDefined();
  });

  it("holds each master let go until it is ended, so ControlPersist cannot end it first", async () => {
    const { use, held, ended } = pool(2);
    await use("a");
    await use("b");
    // Let go, both are held (a control connection open to each).
    await new Promise((r) => setTimeout(r, 0));
    expect([...held].sort()).toEqual(["a", "b"]);
    // c takes b's place: b's hold is let go as b is ended.
    await use("c");
    await new Promise((r) => setTimeout(r, 0));
    expect(ended).toEqual(["b"]);
    expect([...held].sort()).toEqual(["a", "c"]);
  });

  it("a use that made no master gives its place up, and a waiting use takes it", async () => {
    const { p, use, ended } = pool(1, new Set(["down"]));
    await use("down");
    await new Promise((r) => setTimeout(r, 0));
    // Nothing to end for "up": the place of "down" (no master there) was freed.
    await use("up");
    expect(ended).toEqual([]);
    expect(p.stats()).toMatchObject({ opened: 2, ended: 0 });
  });

  it("reuses a held master without a new login", async () => {
    const { p, use } = pool(3);
    for (const host of ["a", "b", "a", "b", "a"]) await use(host);
    expect(p.stats()).toEqual({ opened: 2, ended: 0, peak: 2 });
  });

  it("never ends a master in use: a use waits for a place to be let go", async () => {
    const { use, ended, most } = pool(2);
    const order: string[] = [];
    let letGo: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const a = use("a", async () => {
      order.push("a in");
      await held;
      order.push("a out");
    });
    const b = use("b", async () => {
      order.push("b in");
      await held;
      order.push("b out");
    });
    await new Promise((r) => setTimeout(r, 10));
    const c = use("c", async () => {
      order.push("c in");
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(["a in", "b in"]);
    letGo();
    await Promise.all([a, b, c]);
    expect(order.slice(-1)).toEqual(["c in"]);
    expect(ended).toHaveLength(1);
    expect(most()).toBe(2);
  });

  it("many uses at once over many hosts stay within the bound and all run", async () => {
    const { use, most, p } = pool(4);
    const hosts = Array.from({ length: 40 }, (_, i) => `h${i % 13}`);
    let ran = 0;
    await Promise.all(
      hosts.map((h) =>
        use(h, async () => {
          await new Promise((r) => setTimeout(r, 1 + (ran % 3)));
          ran++;
        }),
      ),
    );
    expect(ran).toBe(40);
    expect(most()).toBeLessThanOrEqual(4);
    expect(p.stats().peak).toBeLessThanOrEqual(4);
  });
});
