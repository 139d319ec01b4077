// Nix 2.8's own words (captured from real builds on a lab host) read into builders and failures.
import { describe, expect, it } from "vitest";
import { NixBuildLog } from "./build-log.js";
import { builderError } from "./builder-error.js";

function read(text: string, store?: string): NixBuildLog {
  const log = new NixBuildLog(store);
  for (const line of text.split("\n")) log.add(line);
  log.end();
  return log;
}

const B = "ssh-ng://root@10.231.1.2";

describe("NixBuildLog", () => {
  it("counts the derivations each builder built", () => {
    const log = read(`building '/nix/store/aaa-example-kernel-6.6.drv' on '${B}'...
copying 0 paths...
building '/nix/store/aaa-example-kernel-6.6.drv'...
copying path '/nix/store/bbb-example-kernel-6.6' from '${B}'...
building '/nix/store/ccc-example-web-system-remote.drv' on '${B}'...
building '/nix/store/ddd-x.drv' on 'ssh://arm'...`);
    expect(log.builtOn()).toEqual([
      { builder: B, derivations: 2 },
      { builder: "ssh://arm", derivations: 1 },
    ]);
    expect(log.failures).toEqual([]);
  });

  it("names an unreachable builder with ssh's words", () => {
    const log = read(`ssh: connect to host 10.231.1.9 port 22: No route to host
cannot build on 'ssh-ng://root@10.231.1.9': error: cannot open connection to remote store 'ssh-ng://root@10.231.1.9': error: unexpected end-of-file
Failed to find a machine for remote build!
error: unable to start any build; remote machines may not have all required system features.`);
    expect(log.failures).toEqual([
      {
        builder: "ssh-ng://root@10.231.1.9",
        kind: "unreachable",
        said: [
          "ssh: connect to host 10.231.1.9 port 22: No route to host",
          "error: cannot open connection to remote store 'ssh-ng://root@10.231.1.9': error: unexpected end-of-file",
        ],
      },
    ]);
    const err = builderError(log.failures);
    expect(err?.code).toBe("builder-unreachable");
    expect(err?.message).toMatch(
      /^builder ssh-ng:\/\/root@10\.231\.1\.9 cannot be reached:\n {2}ssh: connect/,
    );
  });

  it("tells a refused host key, a missing Nix and a refused login apart", () => {
    const kinds = [
      "Host key verification failed.",
      "bash: line 1: nix-daemon: command not found",
      "root@10.231.1.2: Permission denied (publickey).",
      "something else",
    ].map(
      (why) =>
        read(`${why}\ncannot build on '${B}': error: unexpected end-of-file`).failures[0]?.kind,
    );
    expect(kinds).toEqual(["host-key", "nix-missing", "auth", "connection"]);
  });

  it("keeps the end of a build log that failed on a builder", () => {
    const log = read(`building '/nix/store/fff-fail.drv' on '${B}'...
error: build of '/nix/store/fff-fail.drv' on '${B}' failed: builder for '/nix/store/fff-fail.drv' failed with exit code 3;
       last 2 log lines:
       > line 1
       > oops
       For full logs, run 'nix log /nix/store/fff-fail.drv'.
error: builder for '/nix/store/fff-fail.drv' failed with exit code 1`);
    expect(log.failures).toEqual([
      {
        builder: B,
        kind: "build-failed",
        drv: "/nix/store/fff-fail.drv",
        said: [
          "builder for '/nix/store/fff-fail.drv' failed with exit code 3;",
          "last 2 log lines:",
          "> line 1",
          "> oops",
          "For full logs, run 'nix log /nix/store/fff-fail.drv'.",
        ],
      },
    ]);
    expect(builderError(log.failures)?.message).toMatch(
      /^builder ssh-ng:\/\/root@10\.231\.1\.2 failed to build \/nix\/store\/fff-fail\.drv:\n/,
    );
  });

  it("names the build host for builds and failures in its store", () => {
    const log = read(
      `building '/nix/store/aaa-etc.drv'...
building '/nix/store/bbb-system.drv'...
error: builder for '/nix/store/bbb-system.drv' failed with exit code 3;
       last 1 log lines:
       > oops`,
      "ssh-ng://root@rbx1",
    );
    expect(log.builtOn()).toEqual([{ builder: "ssh-ng://root@rbx1", derivations: 2 }]);
    expect(log.failures[0]).toMatchObject({
      builder: "ssh-ng://root@rbx1",
      kind: "build-failed",
      drv: "/nix/store/bbb-system.drv",
    });
  });

  it("clips lines and keeps a bounded number of them", () => {
    const log = read(
      `${Array.from({ length: 30 }, (_, i) => `noise ${i} ${"x".repeat(1000)}`).join("\n")}\ncannot build on '${B}': error: eof`,
    );
    const said = log.failures[0]?.said ?? [];
    expect(said.length).toBeLessThanOrEqual(12);
    expect(Math.max(...said.map((l) => l.length))).toBeLessThanOrEqual(300);
  });
});
