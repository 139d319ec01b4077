import { describe, expect, it } from "vitest";
import {
  bridgeOwner,
  freeLabNumber,
  isHostOf,
  LAB_LINK,
  LAB_NETNS,
  labLayout,
  labTag,
  validateLabName,
} from "./layout.js";
import { clientSshConfig, knownHosts, sshdConfig } from "./ssh-files.js";

describe("labLayout", () => {
  const lab = labLayout("/labs", "web", 7, 3);

  it("names hosts by prefix and gives each an address on the lab's /24", () => {
    const tag = labTag("/labs/web");
    expect(lab.hosts.map((h) => [h.name, h.address, h.netns, h.veth])).toEqual([
      ["web1", "10.231.7.2", `nxs7-${tag}-web1`, "nxs7v1"],
      ["web2", "10.231.7.3", `nxs7-${tag}-web2`, "nxs7v2"],
      ["web3", "10.231.7.4", `nxs7-${tag}-web3`, "nxs7v3"],
    ]);
    expect([lab.bridge, lab.gateway, lab.dir]).toEqual(["nxs7", "10.231.7.1", "/labs/web"]);
    expect(lab.hosts[0]?.dir).toBe("/labs/web/hosts/web1");
  });

  it("names a lab's namespaces after its lab directory, which its bridge's alias names", () => {
    const here = labLayout("/a/labs", "web", 7, 1);
    const there = labLayout("/b/labs", "web", 8, 1);
    expect(here.tag).toMatch(/^[0-9a-f]{8}$/);
    expect(here.tag).not.toBe(there.tag);
    expect(labTag("/a/labs/web")).toBe(here.tag);
    expect(labTag("/a/labs/../labs/web")).toBe(here.tag);
    expect(here.hosts[0]?.netns).not.toBe(there.hosts[0]?.netns);
    expect(bridgeOwner("/a/labs/web")).toBe("nixship-lab /a/labs/web");
    expect(LAB_NETNS.exec(here.hosts[0]?.netns ?? "")?.slice(1)).toEqual(["7", here.tag, "web1"]);
    // A lab's name may end in digits: its hosts are its name and an index.
    expect(isHostOf("lab2", "lab21")).toBe(true);
    expect(isHostOf("lab", "lab21")).toBe(true);
    expect(isHostOf("lab2", "lab1")).toBe(false);
    expect(isHostOf("lab", "lab-1")).toBe(false);
    expect(isHostOf("web", "web")).toBe(false);
  });

  it("keeps interface names within Linux's 15 characters at the limits", () => {
    const big = labLayout("/labs", "abcdefghijklmnop", 254, 200);
    for (const name of [big.bridge, ...big.hosts.map((h) => h.veth)]) {
      expect(name.length).toBeLessThanOrEqual(15);
      expect(LAB_LINK.test(name)).toBe(true);
    }
    expect(big.hosts.at(-1)?.address).toBe("10.231.254.201");
    for (const h of big.hosts) expect(LAB_NETNS.test(h.netns)).toBe(true);
  });

  it("rejects bad names, counts and numbers", () => {
    expect(() => validateLabName("Web")).toThrow(/lab name 'Web'/);
    expect(() => validateLabName("web-")).toThrow(/lab name/);
    expect(() => validateLabName("a".repeat(17))).toThrow(/1-16/);
    expect(() => labLayout("/labs", "web", 1, 0)).toThrow(/1 to 200 hosts/);
    expect(() => labLayout("/labs", "web", 1, 201)).toThrow(/1 to 200 hosts/);
    expect(() => labLayout("/labs", "web", 255, 1)).toThrow(/lab numbers/);
  });

  it("picks the lowest free number", () => {
    expect(freeLabNumber(new Set())).toBe(1);
    expect(freeLabNumber(new Set([1, 2, 4]))).toBe(3);
    expect(() => freeLabNumber(new Set(Array.from({ length: 254 }, (_, i) => i + 1)))).toThrow(
      /all 254 lab numbers are in use/,
    );
  });
});

describe("lab SSH files", () => {
  const lab = labLayout("/labs", "web", 7, 2);

  it("checks host keys strictly and shares one connection per host", () => {
    const config = clientSshConfig(lab);
    expect(config).toContain("Host web2\n  HostName 10.231.7.3\n  User root");
    expect(config).toContain("StrictHostKeyChecking yes");
    expect(config).toContain("UserKnownHostsFile /labs/web/known_hosts");
    expect(config).toContain("ControlMaster auto");
    expect(config).not.toMatch(/StrictHostKeyChecking no|accept-new/);
  });

  it("lists each host's key under its name and address", () => {
    const keys = new Map([
      ["web1", "ssh-ed25519 AAA1"],
      ["web2", "ssh-ed25519 AAA2"],
    ]);
    expect(knownHosts(lab, keys)).toBe(
      "web1,10.231.7.2 ssh-ed25519 AAA1\nweb2,10.231.7.3 ssh-ed25519 AAA2\n",
    );
    expect(() => knownHosts(lab, new Map())).toThrow(/no host key for web1/);
  });

  it("has sshd listen only on the host's address, with keys only", () => {
    const config = sshdConfig(lab.hosts[0] as (typeof lab.hosts)[number]);
    expect(config).toContain("ListenAddress 10.231.7.2:22");
    expect(config).toContain("PasswordAuthentication no");
  });
});
