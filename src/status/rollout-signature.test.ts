// A rollout record signed by the deployer's cache key: read as before, believed only when a
// trusted key signed exactly its line.
import { describe, expect, it } from "vitest";
import { rolloutRecord } from "../../test/support/rollout-records.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { formatRolloutRecord, parseRolloutRecord } from "./rollout.js";
import { recordTrust } from "./rollout-signature.js";
import { splitSignedRecord } from "./signed-record.js";

const key = generateSecretKey("cache-1");
const other = generateSecretKey("cache-1");
const record = rolloutRecord([
  { host: "web1", state: "confirmed", phase: null, system: null, message: null },
]);

describe("a rollout record's signature", () => {
  it("is the record's last member; the record reads as it did, one JSON object", () => {
    const bytes = formatRolloutRecord(record, key);
    const text = Buffer.from(bytes).toString("utf8");
    expect(JSON.parse(text)).toEqual({ ...record, signature: expect.stringMatching(/^cache-1:/) });
    expect(parseRolloutRecord(bytes, "r")).toEqual(record);
    expect(splitSignedRecord(bytes).signature).toMatch(/^cache-1:/);
    expect(recordTrust(bytes, [publicKeyOf(key)])).toEqual({ trusted: true, keyName: "cache-1" });
  });

  it("is not believed unsigned, edited, or signed by a key not trusted", () => {
    expect(recordTrust(formatRolloutRecord(record), [publicKeyOf(key)])).toEqual({
      trusted: false,
      why: "it is not signed",
    });
    const edited = Buffer.from(
      Buffer.from(formatRolloutRecord(record, key)).toString("utf8").replace("web1", "web2"),
    );
    expect(recordTrust(edited, [publicKeyOf(key)])).toMatchObject({
      trusted: false,
      why: expect.stringContaining("does not match it"),
    });
    // Another key of the same name: its signature does not verify.
    expect(recordTrust(formatRolloutRecord(record, other), [publicKeyOf(key)])).toMatchObject({
      trusted: false,
      why: expect.stringContaining("does not match it"),
    });
    expect(
      recordTrust(formatRolloutRecord(record, generateSecretKey("x-1")), [publicKeyOf(key)]),
    ).toMatchObject({
      trusted: false,
      why: "it is signed by key 'x-1', which is not in cache.publicKeys (one dropped from them, rotated or leaked, or a stranger's)",
    });
  });

  it("leaves a record written by hand over several lines whole", () => {
    const pretty = Buffer.from(JSON.stringify(record, null, 2));
    expect(parseRolloutRecord(pretty, "r")).toEqual(record);
    expect(recordTrust(pretty, [publicKeyOf(key)])).toMatchObject({ trusted: false });
  });
});
