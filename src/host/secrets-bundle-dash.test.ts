// The bundle refuses a path segment starting with "-": a command on the host would read
// `/run/keys/--version` as an option (the fleet file refuses it first: fleet/read-secrets.ts).
import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { type BundledSecret, secretsBundle, secretsManifestDigest } from "./secrets-bundle.js";

const db: BundledSecret = {
  name: "db",
  owner: "root",
  group: "root",
  mode: "0400",
  path: "/run/keys/db",
  ciphertext: new Uint8Array([1, 2, 3]),
};

describe("a bundled secret's path", () => {
  it("is refused, as a bug, when a segment starts with '-'", () => {
    for (const path of ["/run/keys/--version", "/run/-x/db", "/run/keys/-"]) {
      const attempt = () => secretsBundle([{ ...db, path }]);
      expect(attempt, path).toThrow(/PATH \(a segment starts with '-'/);
      expect(attempt, path).not.toThrow(InputError);
      expect(() => secretsManifestDigest([{ ...db, path }]), path).toThrow(Error);
    }
    expect(() => secretsBundle([{ ...db, path: "/run/keys/db-2" }])).not.toThrow();
  });
});
