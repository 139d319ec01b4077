// An AWS SDK error is shown without the SDK's pointer to its own internals (an answer that did
// not parse: an endpoint that is not the service) and without the deployer's credentials.
import { afterEach, describe, expect, it } from "vitest";
import { awsErrorText } from "./aws-error-text.js";

const saved = process.env.AWS_SECRET_ACCESS_KEY;
afterEach(() => {
  if (saved === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  else process.env.AWS_SECRET_ACCESS_KEY = saved;
});

describe("awsErrorText", () => {
  it("says an answer did not parse in the user's terms, not the SDK's hidden field", () => {
    // The SDK's words, as @aws-sdk's XML and JSON deserializers give them.
    const err = new Error(
      "@aws-sdk XML parse error: unexpected content.\n  Deserialization error: to see the raw response, inspect the hidden field {error}.$response on this object.",
    );
    expect(awsErrorText(err)).toBe(
      "@aws-sdk XML parse error: unexpected content. (the answer did not parse: the endpoint does not answer as AWS does)",
    );
  });

  it("masks the environment's secret key", () => {
    process.env.AWS_SECRET_ACCESS_KEY = "SECRETKEY-0123456789";
    expect(awsErrorText(new Error("echo SECRETKEY-0123456789"))).toBe("echo ***");
  });
});
