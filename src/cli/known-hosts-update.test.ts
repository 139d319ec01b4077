import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { HOSTS_NAMED, type KnownHostsUpdate, reportKnownHosts } from "./known-hosts-update.js";

const names = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `web${i + from}`);

function report(update: KnownHostsUpdate): string[] {
  const stderr = new PassThrough();
  let text = "";
  stderr.on("data", (d: Buffer) => {
    text += d.toString();
  });
  reportKnownHosts(update, stderr);
  return text.split("\n").filter((l) => l !== "");
}

function update(added: number, keyless: number, unusable: number): KnownHostsUpdate {
  return {
    file: "known_hosts",
    store: "s3://fleet-cache",
    merge: {
      text: "",
      changed: added > 0,
      hosts: names(added).map((host) => ({
        host,
        names: ["10.0.0.1"],
        key: "ssh-ed25519 AAAA",
        fingerprint: "SHA256:x",
        source: "Terraform's output",
        change: "added" as const,
      })),
    },
    pending: [
      ...names(keyless, 1000).map((host) => ({ host })),
      ...names(unusable, 2000).map((host) => ({ host, unusable: "not an ssh-ed25519 key" })),
    ],
  };
}

describe("reportKnownHosts", () => {
  it("names each host of a small fleet, and gives each keyless host its note", () => {
    const lines = report(update(2, 1, 1));
    expect(lines).toEqual([
      "wrote known_hosts: added web1, web2",
      expect.stringMatching(
        /^note: web1000 has no SSH host key yet: .*status\/host-keys\/web1000\.pub in s3:\/\/fleet-cache\. .*until then, nixship refuses to reach web1000 over ssh\)$/,
      ),
      expect.stringMatching(
        /^note: web2000 has no usable SSH host key: .*\(not an ssh-ed25519 key\).*refuses to reach web2000 over ssh\)$/,
      ),
    ]);
  });

  it("keeps every line short for a fleet of thousands: the first hosts, then how many more", () => {
    const lines = report(update(20_000, 5_000, 30));
    expect(lines[0]).toBe(
      `wrote known_hosts: added ${names(HOSTS_NAMED).join(", ")} and ${20_000 - HOSTS_NAMED} more (--json lists every host)`,
    );
    expect(lines[1]).toMatch(
      /^note: 5000 hosts have no SSH host key yet: web1000, .* and 4980 more: .*status\/host-keys\/HOST\.pub in s3:\/\/fleet-cache\. Each publishes its key when it first boots/,
    );
    expect(lines.filter((l) => l.includes("has no usable SSH host key"))).toHaveLength(HOSTS_NAMED);
    expect(lines.at(-1)).toBe(
      `note: … and ${30 - HOSTS_NAMED} more hosts whose published key is unusable (--json lists them)`,
    );
    expect(lines).toHaveLength(2 + HOSTS_NAMED + 1);
    for (const line of lines) expect(line.length).toBeLessThan(1000);
  });
});
