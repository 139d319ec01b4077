// The per-client token buckets that bound the dashboard's requests, over an injected clock.
import { describe, expect, it } from "vitest";
import { REQUEST_BURST, REQUESTS_PER_SECOND, RequestBuckets } from "./limits.js";

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
    const buckets = new RequestBuckets(2, 3, time.now);
    expect(takes(buckets, "10.0.0.1", 5)).toEqual([true, true, true, false, false]);
  });

  it("refills at the rate, up to the burst", () => {
    const time = clock();
    const buckets = new RequestBuckets(2, 3, time.now);
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
    const fast = new RequestBuckets(50, 2, time.now);
    takes(fast, "c", 3);
    expect(fast.retryAfter("c")).toBe(1);
    const slow = new RequestBuckets(0.25, 1, time.now);
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
    const buckets = new RequestBuckets(1, 2, time.now);
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
    const buckets = new RequestBuckets(1, 1, time.now);
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
    const buckets = new RequestBuckets(undefined, undefined, time.now);
    expect(takes(buckets, "c", REQUEST_BURST + 1).filter(Boolean)).toHaveLength(REQUEST_BURST);
    time.advance(1_000);
    expect(takes(buckets, "c", REQUESTS_PER_SECOND + 1).filter(Boolean)).toHaveLength(
      REQUESTS_PER_SECOND,
    );
  });
});
