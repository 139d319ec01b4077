// bench:from-terraform: `nixship fleet from-terraform --via ssh --known-hosts` of synthetic
// `terraform output -json` documents of several sizes: wall and CPU seconds and peak RSS, per
// 1,000 hosts, so that growth shows. Half the hosts are in the known_hosts file already (same
// key), a quarter under an old address (a line nixship wrote, to move), a quarter are new.
//
// The peer is what a tutorial's shell does for each host's key (`ssh-keygen -R ADDRESS -f FILE`,
// then the new line appended), measured in the same run on the first --peer-hosts hosts of the
// smallest size (each ssh-keygen rewrites the whole file: measured on all hosts it takes hours).
//
//   npm run bench:from-terraform [-- --hosts 5000,20000 --peer-hosts 1000 --bin OTHER/dist/cli/bin.js]
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ed25519PublicKeyLine as ed25519Line } from "../support/ssh-key-line.js";
import { measure } from "./measure.js";
import { mb, table } from "./stats.js";

const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const SYSTEM_TEMPLATE = ".#nixosConfigurations.{name}.config.system.build.toplevel";
/** A cache public key the fleet names (any well-formed one: nothing is fetched). */
const CACHE_KEY = "cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I=";

interface SyntheticHost {
  readonly name: string;
  readonly address: string;
  readonly key: string;
}

function hostsOf(n: number): SyntheticHost[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `web${i + 1}`,
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    key: ed25519Line(),
  }));
}

function outputsOf(hosts: readonly SyntheticHost[]): string {
  const output = (value: unknown, type: unknown = "string") => ({ sensitive: false, type, value });
  return JSON.stringify({
    cache_url: output("s3://fleet-cache?region=eu-west-1"),
    region: output("eu-west-1"),
    ssm_document_name: output("nixship-activate"),
    hosts: output(
      Object.fromEntries(
        hosts.map((h, i) => [
          h.name,
          {
            instance_id: `i-${(i + 1).toString(16).padStart(17, "0")}`,
            private_ip: h.address,
            public_ip: "",
            tags: { Role: "web" },
            ssh_host_public_key: h.key,
          },
        ]),
      ),
      ["object", {}],
    ),
  });
}

/** Half known (same key), a quarter under an old address, a quarter absent. */
function knownHostsOf(hosts: readonly SyntheticHost[]): string {
  return hosts
    .map((h, i) => {
      if (i % 4 < 2) return `${h.address} ${h.key} nixship:${h.name}\n`;
      if (i % 4 === 2) return `192.0.2.${i % 250} ${h.key} nixship:${h.name}\n`;
      return "";
    })
    .join("");
}

/** The shell's way, host by host: ssh-keygen -R, then the line appended. */
function peerSeconds(hosts: readonly SyntheticHost[], file: string): number {
  const script = hosts
    .map(
      (h) =>
        `ssh-keygen -q -R '${h.address}' -f '${file}' >/dev/null 2>&1; echo '${h.address} ${h.key}' >> '${file}'`,
    )
    .join("\n");
  const started = performance.now();
  const r = spawnSync("sh", ["-s"], {
    input: script,
    stdio: ["pipe", "ignore", "ignore"],
    timeout: 3_600_000,
  });
  if (r.status !== 0) {
    throw new Error(`the peer's shell loop failed (${r.status ?? r.signal ?? r.error?.message})`);
  }
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      hosts: { type: "string" },
      "peer-hosts": { type: "string" },
      // Another build's dist/cli/bin.js, to compare (an older checkout's).
      bin: { type: "string" },
    },
  });
  const bin = values.bin ?? NIXSHIP_BIN;
  const sizes = (values.hosts ?? "5000,20000").split(",").map(Number);
  const peerHosts = Number(values["peer-hosts"] ?? "1000");
  if (sizes.some((n) => !Number.isInteger(n) || n < 4) || !Number.isInteger(peerHosts)) {
    throw new Error("--hosts takes sizes of 4 or more, --peer-hosts a whole number");
  }
  if (spawnSync("ssh-keygen", ["-?"], { stdio: "ignore" }).error !== undefined) {
    throw new Error("ssh-keygen is missing (Debian: openssh-client)");
  }
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-from-terraform-"));
  const rows: string[][] = [];
  let nixshipPerThousand: number | undefined;
  try {
    for (const n of sizes) {
      const hosts = hostsOf(n);
      const dir = join(work, `hosts-${n}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "outputs.json"), outputsOf(hosts));
      await writeFile(join(dir, "known_hosts"), knownHostsOf(hosts));
      const m = await measure(
        process.execPath,
        [
          bin,
          "fleet",
          "from-terraform",
          join(dir, "outputs.json"),
          "--via",
          "ssh",
          "--system",
          SYSTEM_TEMPLATE,
          "--cache-key",
          CACHE_KEY,
          "--known-hosts",
          join(dir, "known_hosts"),
          "--out",
          join(dir, "nixship.json"),
          "--json",
        ],
        process.env,
      );
      if (m.code !== 0) throw new Error(`from-terraform failed (${m.code}): ${m.stderrTail}`);
      const lines = (await readFile(join(dir, "known_hosts"), "utf8")).split("\n").length - 1;
      if (lines !== n) throw new Error(`known_hosts has ${lines} lines for ${n} hosts`);
      nixshipPerThousand ??= (m.seconds / n) * 1000;
      const rss = m.maxRssBytes ?? m.treePeakRssBytes;
      rows.push([
        String(n),
        m.seconds.toFixed(2),
        m.cpuSeconds?.toFixed(2) ?? "-",
        mb(rss),
        ((m.seconds / n) * 1000).toFixed(2),
      ]);
    }
    process.stdout.write(
      `${table([["hosts", "wall s", "CPU s", "peak RSS", "wall s / 1,000 hosts"], ...rows])}\n`,
    );
    if (peerHosts > 0) {
      const hosts = hostsOf(Math.min(peerHosts, sizes[0] ?? peerHosts));
      const file = join(work, "peer_known_hosts");
      await writeFile(file, knownHostsOf(hosts));
      const seconds = peerSeconds(hosts, file);
      const perThousand = (seconds / hosts.length) * 1000;
      process.stdout.write(
        `peer (ssh-keygen -R + append, ${hosts.length} hosts): ${seconds.toFixed(2)} s, ${perThousand.toFixed(2)} s / 1,000 hosts` +
          (nixshipPerThousand === undefined
            ? "\n"
            : `; nixship's ${nixshipPerThousand.toFixed(2)} s / 1,000 hosts at ${sizes[0]} is ${(perThousand / nixshipPerThousand).toFixed(1)}× faster\n`),
      );
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
