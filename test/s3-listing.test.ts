// A store whose listing never advances (it answers every ListObjectsV2 with the same page and
// IsTruncated=true, ignoring StartAfter): nixship stops after one repeated page with a clear
// error, instead of listing forever. The real AWS SDK talks to a small lying responder.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Store, stalledPage } from "../src/store/s3-store.js";
import { nixship } from "../support/cli.js";
import { type LyingS3, startLyingS3 } from "./support/lying-s3.js";

let s3: LyingS3;

beforeAll(async () => {
  // The store in this process signs its requests (the responder reads no signature).
  process.env.AWS_ACCESS_KEY_ID = "x";
  process.env.AWS_SECRET_ACCESS_KEY = "y";
  s3 = await startLyingS3({
    objects: { "nix-cache-info": "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n" },
    listedKeys: [
      "0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb.narinfo",
      "1c7j2gdmd5q5b5sl3jfql3qa0y41zlhb.narinfo",
    ],
  });
});
afterAll(() => s3.stop());

describe("a listing that does not advance", () => {
  it("ends verify with a clear error after one repeated page", async () => {
    const r = await nixship(
      [
        "verify",
        "--cache",
        `s3://${s3.bucket}?region=us-east-1&endpoint=${s3.endpoint}`,
        "--trusted-key",
        "cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I=",
        "--json",
      ],
      { env: { AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "y" } },
    );
    expect(r.code).toBe(1);
    const { error } = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    expect(error.code).toBe("store-list-stuck");
    expect(error.message).toContain(
      'does not advance: the page after "1c7j2gdmd5q5b5sl3jfql3qa0y41zlhb.narinfo" starts again at "0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb.narinfo"',
    );
    // The first page, then the one that repeats it: nothing more.
    expect(s3.requests.get("list")).toBe(2);
  });
});

describe("a listing that answers keys outside the prefix asked", () => {
  it("is refused, naming the key, not cut into the name of another object", async () => {
    const lying = await startLyingS3({ listedKeys: ["cache/x.narinfo", "other/y.narinfo"] });
    const store = new S3Store({
      bucket: lying.bucket,
      region: "us-east-1",
      endpoint: lying.endpoint,
      prefix: "cache",
      retry: { maxDelayMs: 1 },
    });
    try {
      await expect(store.list("")).rejects.toMatchObject({
        code: "store-list-wrong",
        message: expect.stringContaining(
          'S3 list of "cache/" in bucket "lies" at http://127.0.0.1:',
        ),
      });
      await expect(store.list("")).rejects.toThrow(
        'answered a key outside that prefix: "other/y.narinfo"',
      );
    } finally {
      await store.close();
      await lying.stop();
    }
  });
});

describe("stalledPage", () => {
  it("accepts a page that starts after its token, in order", () => {
    expect(stalledPage(["b", "c"], "a", true)).toBeUndefined();
    expect(stalledPage(["a", "b"], undefined, false)).toBeUndefined();
    expect(stalledPage([], "a", false)).toBeUndefined();
  });

  it("names what is wrong with a page that does not move forward", () => {
    expect(stalledPage(["a", "b"], "b", true)).toBe('the page after "b" starts again at "a"');
    expect(stalledPage(["c", "b"], "a", true)).toBe('"b" comes after "c" in the page');
    expect(stalledPage([], "a", true)).toBe("an empty page says more follow");
  });

  it("orders keys as S3 does, by their UTF-8 bytes", () => {
    // U+FF5E sorts before U+1F600 in UTF-8, but after it in UTF-16 code units.
    expect(stalledPage(["\u{1F600}"], "\uFF5E", true)).toBeUndefined();
  });
});
