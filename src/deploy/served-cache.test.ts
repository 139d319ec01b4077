import { describe, expect, it } from "vitest";
import type { FleetHost } from "../fleet/fleet.js";
import { checkServedAddress } from "./served-cache.js";

const system = { kind: "flake", installable: "path:/x#web" } as const;
const ssh = (name: string, address: string | undefined, sshHost?: string): FleetHost => ({
  name,
  tags: [],
  address,
  delivery: "ssh",
  sshHost,
  system,
});

const remote = [ssh("web1", "10.0.0.2"), ssh("web2", undefined, "web2.example.org")];

describe("checkServedAddress", () => {
  it("refuses a loopback address for hosts on other machines, naming them and the fix", () => {
    for (const host of ["127.0.0.1", "127.3.4.5", "::1", "localhost"]) {
      expect(() => checkServedAddress({ host, port: 0 }, remote)).toThrow(
        expect.objectContaining({
          code: "serve-cache-loopback",
          message: expect.stringMatching(
            /is a loopback address, which only this machine reaches: web1, web2 would fail to substitute their systems from it$/,
          ),
          hint: expect.stringContaining('--serve-cache "$(nixship lab address --name NAME):0"'),
        }),
      );
    }
  });

  it("passes an address the hosts can reach, no address, and hosts that are this machine", () => {
    expect(() => checkServedAddress({ host: "10.231.4.1", port: 0 }, remote)).not.toThrow();
    expect(() => checkServedAddress(undefined, remote)).not.toThrow();
    const here = [ssh("me", "127.0.0.1"), ssh("me2", undefined, "localhost")];
    expect(() => checkServedAddress({ host: "127.0.0.1", port: 0 }, here)).not.toThrow();
  });
});

describe("checkServedAddress, the unspecified address", () => {
  it("refuses 0.0.0.0, :: and their other spellings, naming the flag, the value and the fix", () => {
    const local = [ssh("me", "127.0.0.1")];
    for (const [host, given, url] of [
      ["0.0.0.0", "0.0.0.0:0", "http://0.0.0.0:…"],
      ["::", "[::]:8080", "http://[::]:8080"],
      ["0", "0:0", "http://0:…"],
      ["0:0:0:0:0:0:0:0", "[0:0:0:0:0:0:0:0]:0", "http://[0:0:0:0:0:0:0:0]:…"],
      ["::ffff:0.0.0.0", "[::ffff:0.0.0.0]:0", "http://[::ffff:0.0.0.0]:…"],
    ] as const) {
      const port = given.endsWith(":8080") ? 8080 : 0;
      for (const hosts of [remote, local]) {
        expect(() => checkServedAddress({ host, port }, hosts)).toThrow(
          expect.objectContaining({
            code: "serve-cache-unspecified",
            exitCode: 2,
            message: `--serve-cache ${given} is the unspecified address: the cache would listen on every interface, but the URL the hosts are told to fetch from (${url}) names no machine`,
            hint: expect.stringContaining("an address of this machine the hosts can reach"),
          }),
        );
      }
    }
  });
});
