// The per-client token buckets that bound the dashboard's requests, and the fair shares of the
// server's own budget, over an injected clock.
import { describe, expect, it } from "vitest";
import {
  MIN_SHARE,
  REQUEST_BURST,
  REQUESTS_PER_SECOND,
  RequestBuckets,
  SERVER_REQUESTS_PER_SECOND,
} from "./limits.js";

/** A clock in milliseconds that the test moves. */
function clock() {
  let ms = 1_000;
  return { now: () => ms, advance: (by: number) => (ms += by) };
}

/** How many of `n` requests the bucket lets through. */
function takes(buckets: RequestBuckets, client: string, n: number): boolean[] {
  return Array.from({ length: n }, () => buckets.take(client));
}

describe("request buckets", () => {
  it("allows a burst, then refuses", () => {
    const time = clock();
    const buckets = new RequestBuckets({ rate: 2, burst: 3, serverRate: 1e9, now: time.now });
    expect(takes(buckets, "10.0.0.1", 5)).toEqual([true, true, true, false, false]);
  });

  it("refills at the rate, up to the burst", () => {
    const time = clock();
    const buckets = new RequestBuckets({ rate: 2, burst: 3, serverRate: 1e9, now: time.now });
    takes(buckets, "c", 3);
    time.advance(499);
    expect(buckets.take("c")).toBe(false);
    // Refused requests take nothing: the half second still counts.
    time.advance(1);
    expect(buckets.take("c")).toBe(true);
    expect(buckets.take("c")).toBe(false);
    time.advance(1_000);
    expect(takes(buckets, "c", 3)).toEqual([true, true, false]);
    // A long pause fills the bucket to its burst, no further.
    time.advance(60_000);
    expect(takes(buckets, "c", 4)).toEqual([true, true, true, false]);
  });

  it("tells an empty bucket's client to wait at least a second", () => {
    const time = clock();
    const fast = new RequestBuckets({ rate: 50, burst: 2, serverRate: 1e9, now: time.now });
    takes(fast, "c", 3);
    expect(fast.retryAfter("c")).toBe(1);
    const slow = new RequestBuckets({ rate: 0.25, burst: 1, serverRate: 1e9, now: time.now });
    takes(slow, "c", 2);
    expect(slow.retryAfter("c")).toBe(4);
    time.advance(2_000);
    expect(slow.take("c")).toBe(false);
    // Half a token is in: two seconds to go.
    expect(slow.retryAfter("c")).toBe(2);
    expect(slow.retryAfter("never-seen")).toBe(0);
  });

  it("keeps each client's bucket apart", () => {
    const time = clock();
    const buckets = new RequestBuckets({ rate: 1, burst: 2, serverRate: 1e9, now: time.now });
    expect(takes(buckets, "a", 3)).toEqual([true, true, false]);
    expect(takes(buckets, "b", 3)).toEqual([true, true, false]);
    time.advance(1_000);
    expect(buckets.take("a")).toBe(true);
    expect(buckets.take("a")).toBe(false);
    expect(buckets.take("b")).toBe(true);
    expect(buckets.take("c")).toBe(true);
  });

  it("forgets the least recently seen client past 10,000", () => {
    const time = clock();
    const buckets = new RequestBuckets({ rate: 1, burst: 1, serverRate: 1e9, now: time.now });
    expect(takes(buckets, "kept", 2)).toEqual([true, false]);
    expect(takes(buckets, "dropped", 2)).toEqual([true, false]);
    for (let i = 0; i < 9_998; i++) buckets.take(`other-${i}`);
    // 10,000 clients known: "kept" is seen again, so it is the newest.
    expect(buckets.take("kept")).toBe(false);
    buckets.take("one-more");
    // "dropped" was the least recently seen: forgotten, so its bucket is full again.
    expect(buckets.take("dropped")).toBe(true);
    expect(buckets.take("kept")).toBe(false);
  });

  it("defaults to the dashboard's rate and burst", () => {
    const time = clock();
    const buckets = new RequestBuckets({ now: time.now });
    // One client alone is not held to a share: the server's budget is for sharing out.
    const spread = new RequestBuckets({ now: time.now, serverRate: 1e9 });
    expect(takes(spread, "c", REQUEST_BURST + 1).filter(Boolean)).toHaveLength(REQUEST_BURST);
    time.advance(1_000);
    expect(takes(spread, "c", REQUESTS_PER_SECOND + 1).filter(Boolean)).toHaveLength(
      REQUESTS_PER_SECOND,
    );
    time.advance(60_000);
    expect(takes(buckets, "c", SERVER_REQUESTS_PER_SECOND + 1).filter(Boolean)).toHaveLength(
      SERVER_REQUESTS_PER_SECOND,
    );
  });
});

describe("fair shares", () => {
  it("a flood from 40 addresses is held to fair shares, and a viewer is still served", () => {
    const time = clock();
    const buckets = new RequestBuckets({ now: time.now });
    const flooders = Array.from({ length: 40 }, (_, i) => `127.0.0.${i + 2}`);
    let served = 0;
    let viewer = 0;
    // 10 seconds: each flooder sends 100 requests a second (twice its own rate, well within
    // its burst); the viewer at 127.0.0.1 sends 3 (a page, then its live update and a scrape).
    for (let second = 0; second < 10; second++) {
      for (let tick = 0; tick < 100; tick++) {
        for (const f of flooders) if (buckets.take(f)) served++;
        if (tick % 40 === 0 && buckets.take("127.0.0.1")) viewer++;
        time.advance(10);
      }
    }
    expect(viewer).toBe(30);
    // Without fair shares each address would be served its burst and rate: 40 × (300 + 500).
    // With them, each second the larger of the server's rate and everyone's least share, over
    // 10 s plus the last window's worth.
    const perSecond = Math.max(SERVER_REQUESTS_PER_SECOND, MIN_SHARE * 41);
    expect(served).toBeLessThanOrEqual(perSecond * 11);
    expect(served).toBeLessThan((40 * (REQUEST_BURST + 10 * REQUESTS_PER_SECOND)) / 5);
    expect(served).toBeGreaterThan(SERVER_REQUESTS_PER_SECOND * 5);
  });

  it("a client past its share waits, one within it does not", () => {
    const time = clock();
    const buckets = new RequestBuckets({ rate: 100, burst: 100, serverRate: 10, now: time.now });
    expect(takes(buckets, "heavy", 40).filter(Boolean)).toHaveLength(MIN_SHARE);
    expect(buckets.retryAfter("heavy")).toBe(1);
    expect(takes(buckets, "light", 3)).toEqual([true, true, true]);
  });
});
