import { describe, expect, it } from "vitest";
import { problemsOf } from "../../test/support/fleet-problems.js";
import {
  BUILDERS_PATTERN,
  builderAddress,
  decodeHostKey,
  formatBuilders,
  parseBuilderEntries,
  parseBuilderLine,
} from "./builders.js";
import type { Fleet } from "./fleet.js";
import { parseFleet, parseFleetValue, resolveFleetPaths } from "./fleet-file.js";
import { formatFleet } from "./fleet-json.js";

const HOST_KEY_LINE =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C8okWi0dh2l9GKJl";
const HOST_KEY = Buffer.from(HOST_KEY_LINE).toString("base64");

const withBuild = (build: unknown) => ({ build, hosts: { h: { address: "h", system: ".#h" } } });

describe("Nix's builders syntax", () => {
  it("reads every field, and fills Nix's defaults for '-' and missing ones", () => {
    expect(
      parseBuilderLine(
        `ssh-ng://root@b1 x86_64-linux,i686-linux /k/id 4 2.5 kvm,big-parallel kvm ${HOST_KEY}`,
      ),
    ).toEqual({
      uri: "ssh-ng://root@b1",
      systems: ["x86_64-linux", "i686-linux"],
      sshKey: "/k/id",
      maxJobs: 4,
      speedFactor: 2.5,
      supportedFeatures: ["kvm", "big-parallel"],
      mandatoryFeatures: ["kvm"],
      publicHostKey: HOST_KEY,
    });
    expect(parseBuilderLine("ssh://arm - - - -")).toEqual({
      uri: "ssh://arm",
      systems: undefined,
      sshKey: undefined,
      maxJobs: 1,
      speedFactor: 1,
      supportedFeatures: [],
      mandatoryFeatures: [],
      publicHostKey: undefined,
    });
  });

  it("takes entries separated by ';' or new lines, and skips empty ones", () => {
    const parsed = parseBuilderEntries("ssh-ng://a x86_64-linux ;\n\n ssh://b aarch64-linux;", {
      comments: false,
    });
    expect(parsed.problems).toEqual([]);
    expect(parsed.machines.map((m) => [m.uri, m.systems])).toEqual([
      ["ssh-ng://a", ["x86_64-linux"]],
      ["ssh://b", ["aarch64-linux"]],
    ]);
  });

  it("names the entry and the field of each mistake", () => {
    const { problems } = parseBuilderEntries(
      [
        "http://b1 x86_64-linux",
        "b2",
        "ssh://b3 x86_64",
        "ssh://b4 - key",
        "ssh://b5 - - 0",
        "ssh://b6 - - 1 fast",
        "ssh://b7 - - 1 1 k@vm",
        "ssh://b8 - - 1 1 - - bm90LWEta2V5",
        "ssh://b9 - - 1 1 - - - extra",
        "ssh://-oProxyCommand=x",
      ].join(";"),
      { comments: false },
    );
    expect(problems).toHaveLength(10);
    expect(problems[0]).toMatch(/^entry 1 \("http:\/\/b1 x86_64-linux"\): URI must be ssh:\/\//);
    expect(problems[1]).toMatch(/^entry 2 .*URI must be/);
    expect(problems[2]).toMatch(/^entry 3 .*SYSTEMS must be .*x86_64-linux/);
    expect(problems[3]).toMatch(/^entry 4 .*SSH_KEY must be an absolute path/);
    expect(problems[4]).toMatch(/^entry 5 .*MAX_JOBS must be a whole number >= 1/);
    expect(problems[5]).toMatch(/^entry 6 .*SPEED must be a number > 0/);
    expect(problems[6]).toMatch(/^entry 7 .*FEATURES must be/);
    expect(problems[7]).toMatch(
      /^entry 8 .*PUBLIC_HOST_KEY must be the base64 of the builder's host key line/,
    );
    expect(problems[8]).toMatch(/^entry 9 .*has 9 fields; .* at most 8/);
    expect(problems[9]).toMatch(/^entry 10 .*URI must be/);
  });

  it("refuses comments in the fleet file, nested machines files and an empty value", () => {
    expect(parseBuilderEntries("ssh://b # arm", { comments: false }).problems[0]).toMatch(
      /a "#" \(comments belong in a machines file/,
    );
    expect(parseBuilderEntries("# arm\nssh://b", { comments: true }).problems).toEqual([]);
    expect(
      parseBuilderEntries("ssh://a; @/etc/nix/machines", { comments: false }).problems,
    ).toEqual([
      'entry 2 ("@/etc/nix/machines"): a machines file must be the whole value, "@/path/to/machines"',
    ]);
    expect(parseBuilderEntries(" ; ", { comments: false }).problems).toEqual(["names no builder"]);
  });

  it("decodes a host key only when it is the base64 of a key line", () => {
    expect(decodeHostKey(HOST_KEY)).toBe(HOST_KEY_LINE);
    expect(decodeHostKey(Buffer.from(`${HOST_KEY_LINE} root@b1\n`).toString("base64"))).toBe(
      `${HOST_KEY_LINE} root@b1`,
    );
    expect(decodeHostKey(Buffer.from("hello world").toString("base64"))).toBeUndefined();
    expect(decodeHostKey(`${HOST_KEY}=`)).toBeUndefined();
    expect(decodeHostKey("AAAA*AAA")).toBeUndefined();
  });

  it("writes the entries back in the syntax Nix reads, and they read the same", () => {
    const text = `ssh-ng://root@b1 x86_64-linux /k 2 1 kvm - ${HOST_KEY}; ssh://arm`;
    const { machines } = parseBuilderEntries(text, { comments: false });
    const written = formatBuilders(machines);
    expect(written).toBe(
      `ssh-ng://root@b1 x86_64-linux /k 2 1 kvm - ${HOST_KEY} ; ssh://arm - - 1 1 - - -`,
    );
    expect(parseBuilderEntries(written, { comments: false }).machines).toEqual(machines);
    expect(BUILDERS_PATTERN.test(written)).toBe(true);
  });

  it("names the user and host of a builder's URI", () => {
    expect(builderAddress("ssh-ng://root@10.0.0.2?remote-program=x")).toEqual({
      user: "root",
      host: "10.0.0.2",
    });
    expect(builderAddress("ssh://arm")).toEqual({ user: undefined, host: "arm" });
  });
});

describe("the fleet file's build section", () => {
  it("is empty by default", () => {
    expect(parseFleetValue(withBuild(undefined), "f").build).toEqual({
      builders: undefined,
      host: undefined,
      maxJobs: undefined,
    });
  });

  it("names the JSON path of each problem", () => {
    expect(problemsOf(withBuild({ builders: "ssh://b1 x86_64", maxJobs: -1, hosst: "x" }))).toEqual(
      [
        'build.hosst: unknown key (did you mean "host"?)',
        expect.stringMatching(/^build\.builders: entry 1 \("ssh:\/\/b1 x86_64"\): SYSTEMS must be/),
        "build.maxJobs: must be a whole number from 0 to 1024 (got -1)",
      ],
    );
    expect(problemsOf(withBuild({ host: "-oProxyCommand=x" }))[0]).toMatch(/^build\.host: must be/);
    expect(problemsOf(withBuild({ host: "b", builders: "ssh://b1" }))).toEqual([
      'build.host: a build host builds everything itself: give "builders" or "host", not both',
    ]);
    expect(problemsOf(withBuild({ builders: "@" }))[0]).toMatch(
      /^build\.builders: "@FILE" must name one machines file/,
    );
  });

  it("resolves a machines file against the fleet file's directory, and round-trips", () => {
    const fleet = resolveFleetPaths(
      parseFleetValue(withBuild({ builders: "@machines", maxJobs: 0 }), "f"),
      "/srv/fleet",
    );
    expect(fleet.build).toEqual({
      builders: { kind: "file", path: "/srv/fleet/machines" },
      host: undefined,
      maxJobs: 0,
    });
    const roundTrip = (f: Fleet) => parseFleet(formatFleet(f), "f");
    expect(roundTrip(fleet)).toStrictEqual(fleet);
    const inline = parseFleetValue(
      withBuild({ builders: `ssh-ng://root@b1 x86_64-linux - 2 1 - - ${HOST_KEY}` }),
      "f",
    );
    expect(roundTrip(inline)).toStrictEqual(inline);
  });
});
