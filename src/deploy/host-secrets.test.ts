// hostSecrets: which ciphertexts each deployed host gets, refused when a file is missing or not
// encrypted to a host that gets it; real age files written to real ssh host keys.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encryptSecret, parseRecipient } from "../age/age.js";
import { parseFleetValue, resolveFleetPaths } from "../fleet/fleet-file.js";
import { secretsManifestDigest } from "../host/secrets-bundle.js";
import { writeCiphertext } from "../secrets/secret-file.js";
import { hostSecrets } from "./host-secrets.js";

const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-web";
let dir: string;
const keys = new Map<string, string>();

function fleetWith(entries: Record<string, unknown>, secrets = true) {
  const doc = {
    cache: {
      url: "file:///srv/cache",
      publicKeys: ["c-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="],
    },
    releases: { channel: "prod", publicKeys: ["r-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="] },
    hosts: {
      web1: { tags: ["web"], address: "10.0.0.1", system: SYSTEM },
      web2: { tags: ["web"], address: "10.0.0.2", system: SYSTEM },
      db1: { tags: ["db"], delivery: "agent", hostKey: keys.get("db1"), system: SYSTEM },
      fleetwide: {
        tags: ["asg"],
        delivery: "ssm",
        targets: [{ key: "tag:Role", values: ["web"] }],
        hostKey: keys.get("web1"),
        system: SYSTEM,
      },
    },
    ...(secrets ? { secrets: { admins: [keys.get("admin")], entries } } : {}),
  };
  return resolveFleetPaths(parseFleetValue(doc, "fleet.json"), dir);
}

async function encryptTo(name: string, hosts: string[], as = name): Promise<Uint8Array> {
  const recipients = hosts.map((h) => parseRecipient(keys.get(h) as string, h));
  const bytes = await encryptSecret(Buffer.from(`plaintext of ${name}`), recipients, {
    secret: as,
  });
  await writeCiphertext(join(dir, "secrets", `${name}.age`), bytes);
  return bytes;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nixship-host-secrets-"));
  for (const name of ["web1", "web2", "db1", "admin"]) {
    const file = join(dir, name);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file]);
    const [type, key] = readFileSync(`${file}.pub`, "utf8").split(" ");
    keys.set(name, `${type} ${key}`);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hostSecrets", () => {
  it("refuses a secret for an ssm host of tag targets, whose instances each have their own key", async () => {
    await encryptTo("asg-token", ["admin", "web1"]);
    const fleet = fleetWith({ "asg-token": { hosts: "@asg" } });
    await expect(hostSecrets(fleet, fleet.hosts, keys)).rejects.toMatchObject({
      code: "secret-for-tag-target",
      message:
        'secret "asg-token" reaches fleetwide, which stands for every instance its SSM targets match: a secret is encrypted to one host key, and each instance has its own',
      hint: "name each instance as a host of its own (instanceId, and its hostKey), or leave fleetwide out of secrets.entries.asg-token.hosts",
    });
    // Not deployed now: nothing asked of it.
    const others = fleet.hosts.filter((h) => h.name !== "fleetwide");
    expect((await hostSecrets(fleet, others, keys)).has("fleetwide")).toBe(false);
  });

  it("gives each host the ciphertexts of its secrets, and an empty bundle to a host with none", async () => {
    const token = await encryptTo("web-token", ["admin", "web1", "web2"]);
    const fleet = fleetWith({ "web-token": { hosts: "@web", mode: "0440" } });
    const got = await hostSecrets(fleet, fleet.hosts, keys);
    const web1 = got.get("web1");
    expect(web1?.bundle.split("\n")[0]).toBe("nixship-secrets 1");
    expect(web1?.bundle).toContain(`web-token root root 0440 /run/keys/web-token `);
    expect(web1?.bundle).toContain(Buffer.from(token).toString("base64"));
    expect(web1?.digest).toBe(
      secretsManifestDigest([
        {
          name: "web-token",
          owner: "root",
          group: "root",
          mode: "0440",
          path: "/run/keys/web-token",
          ciphertext: token,
        },
      ]),
    );
    expect(got.get("web2")?.digest).toBe(web1?.digest);
    // db1 gets nothing: an empty bundle, so a secret it had is removed.
    expect(got.get("db1")).toEqual({
      bundle: "nixship-secrets 1\n",
      digest: secretsManifestDigest([]),
      age: undefined,
    });
  });

  it("leaves hosts' secrets alone when the fleet has no secrets section", async () => {
    const fleet = fleetWith({}, false);
    expect((await hostSecrets(fleet, fleet.hosts, keys)).size).toBe(0);
  });

  it("a section with no entries gives every host an empty bundle: each removes the secrets it had", async () => {
    const fleet = fleetWith({});
    const got = await hostSecrets(fleet, fleet.hosts, keys);
    expect([...got.keys()].sort()).toEqual(fleet.hosts.map((h) => h.name).sort());
    for (const given of got.values()) {
      expect(given).toEqual({
        bundle: "nixship-secrets 1\n",
        digest: secretsManifestDigest([]),
        age: undefined,
      });
    }
  });

  it("refuses a missing file, a host without a key, and a file not encrypted to a host", async () => {
    const fleet = fleetWith({ "db-password": { hosts: "@db" } });
    await expect(hostSecrets(fleet, fleet.hosts, keys)).rejects.toThrow(
      /secret "db-password" has no file .*db-password\.age/,
    );
    // Its fix runs as printed: with the deploy's --fleet.
    await expect(hostSecrets(fleet, fleet.hosts, keys, "prod.json")).rejects.toMatchObject({
      hint: "create it with: nixship secrets set db-password --fleet prod.json",
    });
    await encryptTo("db-password", ["admin", "web1"]);
    await expect(hostSecrets(fleet, fleet.hosts, keys)).rejects.toThrow(
      /secret "db-password" .* is not encrypted to the host key of db1/,
    );
    const keyless = new Map(keys);
    keyless.delete("db1");
    await expect(hostSecrets(fleet, fleet.hosts, keyless)).rejects.toThrow(
      /goes to db1, whose SSH host key is not known/,
    );
    // Deploying only hosts that do not get it needs neither.
    const web = fleet.hosts.filter((h) => h.name === "web1" || h.name === "web2");
    expect([...(await hostSecrets(fleet, web, keys)).keys()]).toEqual(["web1", "web2"]);
  });

  it("refuses a file encrypted as another secret (the host would), naming both and the fix", async () => {
    const fleet = fleetWith({ "api-token": { hosts: "web1" } });
    await encryptTo("api-token", ["admin", "web1"], "db-password");
    await expect(hostSecrets(fleet, fleet.hosts, keys, "prod.json")).rejects.toMatchObject({
      code: "secret-file-of-another",
      message: expect.stringContaining(
        'secret "api-token" (' +
          join(dir, "secrets", "api-token.age") +
          ') was encrypted as secret "db-password"',
      ),
      hint:
        "restore " +
        join(dir, "secrets", "api-token.age") +
        " from version control, or set the secret anew: nixship secrets set api-token --fleet prod.json; it is never encrypted again under this name (that would give \"db-password\"'s value to this secret's hosts)",
    });
    await encryptTo("api-token", ["admin", "web1"]);
    expect((await hostSecrets(fleet, fleet.hosts, keys)).get("web1")?.bundle).toContain(
      "api-token root root 0400",
    );
  });
});
