// What doctor says to do when ssh to a host or builder fails: it names where the host's key is
// kept (a builder entry's own key, not the probe's scratch file), and whose key to authorise.
import { describe, expect, it } from "vitest";
import type { SshTarget } from "../delivery/ssh-transport.js";
import { sshFix } from "./fleet-checks.js";

const target: SshTarget = {
  name: "b1",
  destination: "b1",
  user: undefined,
  configFile: undefined,
  knownHosts: "/tmp/nixship-builder-x/known_hosts",
};

describe("sshFix", () => {
  it("names a builder entry's PUBLIC_HOST_KEY, never the probe's scratch known_hosts", () => {
    const fix = sshFix(
      "Host key verification failed.",
      target,
      "its PUBLIC_HOST_KEY in build.builders",
    );
    expect(fix).toContain("its PUBLIC_HOST_KEY in build.builders");
    expect(fix).not.toContain("/tmp/");
  });

  it("says whose key to authorise, also when the entry names no user", () => {
    expect(sshFix("root@b1: Permission denied (publickey).", { ...target, user: "root" })).toBe(
      "authorise your ssh key for root@ on the host",
    );
    const none = sshFix("Permission denied (publickey).", target);
    expect(none).not.toContain("undefined");
    expect(none).toBe(
      "authorise your ssh key for the ssh user (ssh_config's, else your login name) on the host",
    );
  });
});
