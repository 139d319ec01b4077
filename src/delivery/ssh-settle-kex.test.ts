import { describe, expect, it } from "vitest";
import { SETTLING_KEX, settlingKexAlgorithms } from "./ssh-settle-kex.js";

// OpenSSH 9.2's default, as `ssh -F /dev/null -G` prints it.
const DEFAULT_9_2 =
  "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256";
// OpenSSH 10's default starts with ML-KEM, which costs about what curve25519 does.
const DEFAULT_10 =
  "mlkem768x25519-sha256,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org";

describe("settlingKexAlgorithms", () => {
  it("puts curve25519-sha256 first in ssh's sntrup761 default, keeping every other algorithm in order", () => {
    const kex = settlingKexAlgorithms(DEFAULT_9_2, DEFAULT_9_2);
    expect(kex?.split(",")).toEqual([
      SETTLING_KEX,
      "sntrup761x25519-sha512",
      "sntrup761x25519-sha512@openssh.com",
      "curve25519-sha256@libssh.org",
      "ecdh-sha2-nistp256",
      "diffie-hellman-group14-sha256",
    ]);
    expect(new Set(kex?.split(","))).toEqual(new Set(DEFAULT_9_2.split(",")));
  });

  it("keeps a list the operator chose, even one that starts with sntrup761", () => {
    const chosen = "sntrup761x25519-sha512@openssh.com,curve25519-sha256";
    expect(settlingKexAlgorithms(chosen, DEFAULT_9_2)).toBeUndefined();
  });

  it("leaves a default that starts with a cheap exchange (OpenSSH 10's ML-KEM) alone", () => {
    expect(settlingKexAlgorithms(DEFAULT_10, DEFAULT_10)).toBeUndefined();
  });

  it("adds nothing that is not offered already: no curve25519-sha256 in the list, no change", () => {
    const noCurve = "sntrup761x25519-sha512,ecdh-sha2-nistp256";
    expect(settlingKexAlgorithms(noCurve, noCurve)).toBeUndefined();
  });

  it("changes nothing when ssh did not say (no setting, or no default read)", () => {
    expect(settlingKexAlgorithms(undefined, DEFAULT_9_2)).toBeUndefined();
    expect(settlingKexAlgorithms(DEFAULT_9_2, undefined)).toBeUndefined();
  });
});
