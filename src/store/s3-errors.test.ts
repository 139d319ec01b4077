// An S3 fault's message names what failed and why, and never the deployer's own credentials,
// even from a server that echoes them back.
import { afterEach, describe, expect, it } from "vitest";
import { s3Fault } from "./s3-errors.js";

const saved = { ...process.env };
afterEach(() => {
  for (const name of ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});

describe("s3Fault", () => {
  it("masks the environment's secret key and session token in what the server said", () => {
    process.env.AWS_SECRET_ACCESS_KEY = "SECRETKEY-0123456789";
    process.env.AWS_SESSION_TOKEN = "SESSIONTOKEN-abcdef";
    const err = Object.assign(
      new Error("bad request: token=SESSIONTOKEN-abcdef key=SECRETKEY-0123456789 for bucket b"),
      { name: "InvalidToken", $metadata: { httpStatusCode: 400 } },
    );
    const fault = s3Fault(err, 'S3 put of "x" in bucket "b"');
    expect(fault.message).toBe(
      'S3 put of "x" in bucket "b" failed: InvalidToken (HTTP 400): bad request: token=*** key=*** for bucket b',
    );
  });

  it("gives a 301 without a body (a HEAD in another region) a hint", () => {
    const err = Object.assign(new Error("UnknownError"), {
      name: "Unknown",
      $metadata: { httpStatusCode: 301 },
    });
    expect(s3Fault(err, 'S3 head of "x" in bucket "b"')).toMatchObject({
      message: 'S3 head of "x" in bucket "b" failed: Unknown (HTTP 301): UnknownError',
      hint: "the bucket is in another region, or the endpoint moved: set ?region= in the store URL, or check its endpoint",
    });
  });
});
