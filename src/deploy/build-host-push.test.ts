// Who pushes a build host's closures: the reasons to copy them back here, decided before the
// build host is asked anything (no ssh is run for these).
import { describe, expect, it } from "vitest";
import type { SshTarget } from "../delivery/ssh-transport.js";
import { choosePusher } from "./build-host-push.js";

const b1 = { name: "b1" } as SshTarget;
const cache = (url: string) => ({ url, publicKeys: [] }) as never;

describe("choosePusher", () => {
  it("copies back for a cache on an endpoint of this machine's loopback, which the build host cannot reach", async () => {
    for (const endpoint of [
      "http://127.0.0.1:9000",
      "http://localhost:9000",
      "http://[::1]:9000",
    ]) {
      const url = `s3://fleet?region=us-east-1&endpoint=${encodeURIComponent(endpoint)}`;
      expect(await choosePusher(b1, cache(url), true)).toEqual({
        kind: "copy-back",
        why: `the cache's endpoint ${endpoint} is this machine's loopback, which b1 cannot reach`,
      });
    }
  });

  it("copies back for a directory cache", async () => {
    expect(await choosePusher(b1, cache("file:///srv/cache"), true)).toMatchObject({
      kind: "copy-back",
    });
  });
});
