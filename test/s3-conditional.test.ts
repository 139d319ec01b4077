// S3Store's conditional requests at the SDK boundary, checked with aws-sdk-client-mock: what
// each request carries, and how S3's answers (304, 412, 409) become data. The contract suite runs
// the same behaviour against s3rver; this pins it to what real S3 documents.
import { Readable } from "node:stream";
import {
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { S3Store } from "../src/store/s3-store.js";

const s3 = mockClient(S3Client);
let store: S3Store;

beforeEach(() => {
  s3.reset();
  store = new S3Store({ bucket: "bucket", prefix: "pre", region: "us-east-1" });
});
afterEach(() => store.close());
afterAll(() => s3.restore());

/** An S3 error response as the SDK surfaces it. */
function s3Error(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: "client",
    $metadata: { httpStatusCode: status },
    message: name,
  });
}

describe("conditional get", () => {
  it("sends If-None-Match and maps 304 to not-modified", async () => {
    // A 304 has no body, so the SDK knows no error code: it reports "Unknown" with the status.
    s3.on(GetObjectCommand).rejects(s3Error("Unknown", 304));
    expect(await store.get("k", { ifNoneMatch: '"abc"' })).toEqual({ status: "not-modified" });
    const [call] = s3.commandCalls(GetObjectCommand);
    expect(call?.args[0].input).toEqual({ Bucket: "bucket", Key: "pre/k", IfNoneMatch: '"abc"' });
  });

  it("returns the object when the etag differs, and sends no condition when none is asked", async () => {
    s3.on(GetObjectCommand).resolves({
      Body: Readable.from([Buffer.from("new")]) as never,
      ContentLength: 3,
      ETag: '"def"',
      LastModified: new Date(1_000),
    });
    const got = await store.get("k", { ifNoneMatch: '"abc"' });
    expect(got).toMatchObject({ status: "found", info: { key: "k", size: 3, etag: '"def"' } });
    if (got?.status === "found") got.body.destroy();
    (await store.get("k"))?.body.destroy();
    const inputs = s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input);
    expect(inputs[1]).toEqual({ Bucket: "bucket", Key: "pre/k" });
  });

  it("still reports an absent object as undefined", async () => {
    s3.on(GetObjectCommand).rejects(s3Error("NoSuchKey", 404));
    expect(await store.get("k", { ifNoneMatch: '"abc"' })).toBeUndefined();
  });

  it("does not take a 304 it did not ask for as not-modified", async () => {
    s3.on(GetObjectCommand).rejects(s3Error("Unknown", 304));
    await expect(store.get("k")).rejects.toMatchObject({ code: "store-s3-failed" });
  });
});

describe("conditional put", () => {
  it("sends If-None-Match: * for ifAbsent and If-Match: etag for ifMatch", async () => {
    s3.on(PutObjectCommand).resolves({ ETag: '"new"' });
    const absent = await store.put("k", Buffer.from("x"), { condition: { ifAbsent: true } });
    const match = await store.put("k", Buffer.from("y"), { condition: { ifMatch: '"old"' } });
    const plain = await store.put("k", Buffer.from("z"));
    for (const result of [absent, match, plain]) {
      expect(result).toEqual({ status: "written", etag: '"new"' });
    }
    const inputs = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
    expect(inputs[0]).toMatchObject({ Bucket: "bucket", Key: "pre/k", IfNoneMatch: "*" });
    expect(inputs[0]).not.toHaveProperty("IfMatch");
    expect(inputs[1]).toMatchObject({ Bucket: "bucket", Key: "pre/k", IfMatch: '"old"' });
    expect(inputs[1]).not.toHaveProperty("IfNoneMatch");
    expect(inputs[2]).not.toHaveProperty("IfNoneMatch");
    expect(inputs[2]).not.toHaveProperty("IfMatch");
  });

  it.each([
    ["412 PreconditionFailed", "PreconditionFailed", 412],
    ["409 ConditionalRequestConflict", "ConditionalRequestConflict", 409],
  ])("maps %s to precondition-failed", async (_, name, status) => {
    s3.on(PutObjectCommand).rejects(s3Error(name, status));
    for (const condition of [{ ifAbsent: true } as const, { ifMatch: '"old"' }]) {
      expect(await store.put("k", Buffer.from("x"), { condition })).toEqual({
        status: "precondition-failed",
      });
    }
  });

  it("keeps other failures faults", async () => {
    s3.on(PutObjectCommand).rejects(s3Error("AccessDenied", 403));
    await expect(
      store.put("k", Buffer.from("x"), { condition: { ifAbsent: true } }),
    ).rejects.toMatchObject({ code: "store-s3-failed", message: expect.stringContaining("pre/k") });
  });
});
