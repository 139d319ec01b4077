import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { FsStore } from "./fs-store.js";
import type { ObjectStore } from "./object-store.js";
import { S3Store } from "./s3-store.js";
import { formatStoreUrl, openStore, parseStoreUrl } from "./url.js";

const ENV = {};

describe("parseStoreUrl", () => {
  it.each([
    ["file:///var/cache/nix", "/var/cache/nix"],
    ["file:///var/cache/nix/", "/var/cache/nix"],
    ["file://localhost/srv/c", "/srv/c"],
    ["file:///a%20b/c", "/a b/c"],
    ["/srv/cache", "/srv/cache"],
    ["/srv//cache/./x/../", "/srv/cache"],
  ])("reads %s as a directory", (text, root) => {
    expect(parseStoreUrl(text, ENV)).toEqual({ kind: "file", root, fsync: true });
  });

  it("reads an s3 URL with prefix and parameters", () => {
    const url = "s3://my-cache/nix/x86?region=eu-west-1&endpoint=http://127.0.0.1:9000&profile=ci";
    expect(parseStoreUrl(url, ENV)).toEqual({
      kind: "s3",
      bucket: "my-cache",
      prefix: "nix/x86",
      region: "eu-west-1",
      endpoint: "http://127.0.0.1:9000",
      profile: "ci",
    });
  });

  it("reads upload-concurrency, the multipart parts in flight", () => {
    expect(parseStoreUrl("s3://bucket?upload-concurrency=1", ENV)).toMatchObject({
      uploadConcurrency: 1,
    });
    expect(parseStoreUrl("s3://bucket?upload-concurrency=16", ENV)).toMatchObject({
      uploadConcurrency: 16,
    });
    expect(parseStoreUrl("s3://bucket", ENV)).not.toHaveProperty("uploadConcurrency");
  });

  it("takes the region from AWS_REGION, then us-east-1", () => {
    expect(parseStoreUrl("s3://bucket", { AWS_REGION: "ap-south-1" })).toMatchObject({
      region: "ap-south-1",
      prefix: "",
    });
    expect(parseStoreUrl("s3://bucket/", {})).toMatchObject({ region: "us-east-1", prefix: "" });
  });

  it("says what is wrong with a file URL's percent-encoding", () => {
    expect(() => parseStoreUrl("file:///tmp/a%2", ENV)).toThrow(
      /the path is not valid percent-encoding \(a '%' is followed by two hex digits; '%25' is '%'\)/,
    );
    expect(() => parseStoreUrl("file:///tmp/a%00b", ENV)).toThrow(
      /the path holds a NUL byte \(%00\)/,
    );
  });

  it("keeps credentials written into a URL out of the error message", () => {
    for (const text of ["s3://AKIA:s3cr3t@bucket", "s3://bucket?endpoint=http://AKIA:s3cr3t@h:1"]) {
      expect(() => parseStoreUrl(text, ENV)).toThrow(/credentials/);
      expect(() => parseStoreUrl(text, ENV)).not.toThrow(/s3cr3t/);
    }
  });

  it.each([
    // An AWS secret key holds a "/" about every other time: the URL does not parse.
    "s3://AKIAEXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYs3cr3t@bucket/p",
    "s3://AKIA:p@ss3cr3t@bucket",
    "s3://bucket?endpoint=http%3A%2F%2FAKIA%3As3cr3t%40minio%3A9000",
    "s3://bucket?endpoint=http://AKIA:ab/s3cr3t@h:1",
    "s3://bucket?secret=s3cr3t",
  ])("says nothing of the credentials in %s", (text) => {
    const message = (() => {
      try {
        parseStoreUrl(text, ENV);
      } catch (err) {
        return (err as Error).message;
      }
      return "parsed";
    })();
    expect(message).toMatch(/^bad store URL /);
    expect(message).not.toMatch(/s3cr3t|K7MDENG/);
  });

  it.each([
    ["cache", "neither an absolute path nor a URL"],
    ["./cache", "neither an absolute path nor a URL"],
    ["http://example.org/cache", 'unknown scheme "http:"'],
    ["gs://bucket", 'unknown scheme "gs:"'],
    ["file://host/srv", "name no host"],
    ["file:relative", 'starts with "file:///"'],
    ["file:///srv?x=1", 'unknown parameter "x"'],
    ["file:///srv?fsync=maybe", 'fsync must be true or false, not "maybe"'],
    ["file:///srv/a%2Fb", "must not include encoded / characters"],
    // What `file://$CACHE_DIR` or `$CACHE_DIR/` gives when the variable is empty: never `/`.
    ["file://", "names the root directory /"],
    ["file:///", "names the root directory /"],
    ["/", "names the root directory /"],
    ["/srv/..", "names the root directory /"],
    ["s3://Bad_Bucket", "not a valid bucket name"],
    ["s3://ab", "not a valid bucket name"],
    ["s3://a..b", "not a valid bucket name"],
    ["s3://10.0.0.1", "not a valid bucket name"],
    ["s3://bucket:9000/x", "not a host:port"],
    ["s3://bucket?regoin=x", 'unknown parameter "regoin"'],
    ["s3://bucket?region=a&region=b", "given twice"],
    ["s3://bucket?region=EU WEST", "not a valid region"],
    ["s3://bucket?endpoint=ftp://h", "not an http(s) URL"],
    ["s3://bucket?endpoint=nonsense", "not an http(s) URL"],
    ["s3://bucket?endpoint=http://h:1/path", "no credentials or path"],
    ["s3://bucket/a//b", "not a valid key"],
    ["s3://bucket/a/../b", "not a valid key"],
    ["s3://bucket/a/./b", "not a valid key"],
    [
      "s3://bucket?upload-concurrency=0",
      'from 1 to 16 (multipart parts in flight, 8 MiB each), not "0"',
    ],
    ["s3://bucket?upload-concurrency=17", "upload-concurrency must be a whole number from 1 to 16"],
    ["s3://bucket?upload-concurrency=2.5", 'not "2.5"'],
    ["s3://bucket?upload-concurrency=", 'not ""'],
    ["s3://bucket?upload-concurrency=four", 'not "four"'],
    ["s3://bucket?upload_concurrency=4", "known: region, endpoint, profile, upload-concurrency"],
  ])("rejects %s", (text, what) => {
    try {
      parseStoreUrl(text, ENV);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).code).toBe("bad-store-url");
      expect((err as Error).message).toContain(`"${text}"`);
      expect((err as Error).message).toContain(what);
      expect((err as InputError).hint).toContain("s3://bucket[/prefix]");
    }
  });
});

describe("formatStoreUrl", () => {
  it.each([
    ["/srv/my cache", "file:///srv/my%20cache"],
    ["s3://b-1", "s3://b-1?region=us-east-1"],
    [
      "s3://b-1/p/q/?endpoint=http://LOCALHOST:9000/&region=r1",
      "s3://b-1/p/q?region=r1&endpoint=http%3A%2F%2Flocalhost%3A9000",
    ],
    ["s3://b-1?upload-concurrency=08", "s3://b-1?region=us-east-1&upload-concurrency=8"],
  ])("canonicalizes %s", (text, canonical) => {
    const parsed = parseStoreUrl(text, ENV);
    expect(formatStoreUrl(parsed)).toBe(canonical);
    expect(parseStoreUrl(canonical, ENV)).toEqual(parsed);
  });
});

describe("openStore", () => {
  const opened: ObjectStore[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()));
  });

  it("opens a directory store with its canonical URL", async () => {
    const store = await openStore("/tmp/nixship-never-created/");
    opened.push(store);
    expect(store).toBeInstanceOf(FsStore);
    expect(store.url).toBe("file:///tmp/nixship-never-created");
  });

  it("opens an S3 store without contacting it, and keeps credentials out of its URL", async () => {
    const store = await openStore("s3://bucket/p?region=eu-central-1&endpoint=http://127.0.0.1:1");
    opened.push(store);
    expect(store).toBeInstanceOf(S3Store);
    expect(store.url).toBe("s3://bucket/p?region=eu-central-1&endpoint=http%3A%2F%2F127.0.0.1%3A1");
  });

  it("rejects a bad URL with InputError", async () => {
    await expect(openStore("relative/dir")).rejects.toThrow(InputError);
  });

  // Its reads said "no binary cache: run cache init", and cache init then failed with ENOTDIR
  // on a temporary file's name and a hint about "a" and "a/b".
  it("refuses a directory store whose root is a file, or under one, as what it is", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-url-file-root-"));
    try {
      const file = join(dir, "afile");
      await writeFile(file, "x");
      await expect(openStore(`file://${file}`)).rejects.toMatchObject({
        code: "store-not-directory",
        message: `file://${file}: ${file} is a file, not a directory`,
        hint: expect.stringContaining("a file:// store URL names a directory"),
      });
      await expect(openStore(`${file}/cache`)).rejects.toMatchObject({
        code: "store-not-directory",
        message: `file://${file}/cache: ${file}/cache is under a file, not a directory`,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("file URL durability", () => {
  it("fsyncs by default and round-trips ?fsync=false", () => {
    const url = parseStoreUrl("file:///srv/cache?fsync=false", ENV);
    expect(url).toEqual({ kind: "file", root: "/srv/cache", fsync: false });
    expect(formatStoreUrl(url)).toBe("file:///srv/cache?fsync=false");
    expect(formatStoreUrl(parseStoreUrl("file:///srv/cache?fsync=true", ENV))).toBe(
      "file:///srv/cache",
    );
  });
});
