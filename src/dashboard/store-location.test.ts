// The store's location, in every form an answer may carry it, said as "the store".
import { describe, expect, it } from "vitest";
import { hideStoreLocation, storeLocations } from "./store-location.js";

describe("hideStoreLocation", () => {
  it("hides an s3 store's URL, bucket, prefix and endpoint, raw, in HTML and in JSON", () => {
    const url =
      "s3://secret-bucket/fleet/a?region=eu-west-1&endpoint=http://10.0.0.9:9000&profile=ops";
    const where = storeLocations(url);
    const texts = [
      `no channel prod in ${url}`,
      `<p>The store could not be read: ${url.replaceAll("&", "&amp;")} answered 403</p>`,
      JSON.stringify({ error: `list s3://secret-bucket/fleet/a/status/ failed` }),
      "NoSuchKey: secret-bucket/fleet/a/status/hosts/web1.json",
      "connect to http://10.0.0.9:9000 refused",
    ];
    for (const text of texts) {
      const hidden = hideStoreLocation(text, where);
      expect(hidden).not.toMatch(/secret-bucket|10\.0\.0\.9|profile=ops/);
      expect(hidden).toContain("the store");
    }
    expect(hideStoreLocation(`no channel prod in ${url}`, where)).toBe(
      "no channel prod in the store",
    );
  });

  it("hides a directory store's URL and path, and leaves other text alone", () => {
    const where = storeLocations("file:///srv/nix%20cache?fsync=false");
    expect(hideStoreLocation("file:///srv/nix%20cache holds no binary cache", where)).toBe(
      "the store holds no binary cache",
    );
    expect(hideStoreLocation("ENOENT: open '/srv/nix cache/status/x.json'", where)).toBe(
      "ENOENT: open 'the store/status/x.json'",
    );
    expect(hideStoreLocation("web1 runs web-v2 since 10:00", where)).toBe(
      "web1 runs web-v2 since 10:00",
    );
  });
});
