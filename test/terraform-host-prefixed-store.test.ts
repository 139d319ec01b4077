// An agent host whose store_url has a key prefix (s3://BUCKET/PREFIX?region=R, the
// cache module's store_url with its prefix). Nix's own S3 store cannot read under a prefix, so
// the host module's user-data puts fetch.sh.tftpl before the bootstrap: curl fetches the
// nixship package's closure, signed with the role's IMDSv2 credentials, into a file:// cache,
// and Nix realises the package from there with require-sigs and only the cache's keys.
// Here the rendered user-data runs as root in a mount namespace of its own, as on a fresh host:
// an empty /nix (this machine's Nix, /usr/bin/nix-store, makes its store there), /etc (an
// overlay), /var/lib and /root of the host's own, stand-ins for systemctl, systemd-run and
// sleep first on PATH. The real curl talks to a stand-in IMDS and an S3 endpoint that checks
// every request's SigV4 signature (test/support/aws-stand-ins.ts) and serves what
// `nixship push` wrote under prefixes to s3rver. Shown: the package is realised from under the
// prefix (every request signed, none outside it), the bootstrap then runs it; the next boot
// fetches nothing; a closure with one path signed by an untrusted key is refused by Nix after
// the bounded attempts; the path and byte limits refuse at once; a script over 16 KiB (with the
// SSH part) runs without its comment lines; the store without a prefix still goes to Nix's own
// substituter (file:// here: this Nix has no S3 store); no credential is on any command line.
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAll } from "../src/store/helpers.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { type CliRun, nixship, run, runOk } from "../support/cli.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import {
  type Imds,
  ROLE_CREDENTIALS,
  type SignedS3,
  startImds,
  startSignedS3,
  writeCurlShim,
} from "./support/aws-stand-ins.js";
import { HOST_MODULE_DIR, USER_DATA_LIMIT, userDataOf } from "./support/host-user-data.js";
import { renderTemplate, type TemplateValue } from "./support/tftpl.js";

const FETCH = join(HOST_MODULE_DIR, "fetch.sh.tftpl");
const BOOTSTRAP = join(HOST_MODULE_DIR, "user-data.sh.tftpl");
const SSH = join(HOST_MODULE_DIR, "ssh.sh.tftpl");
const HOST = "web1";
const ROLE = "nixship-web1-20250101";
const REGION = "eu-west-1";
/** The bucket as the host addresses it (the stand-in serves s3rver's bucket under this name). */
const BUCKET = "fleet-store";
/** The fleet's store, signed by the cache key the host trusts. */
const PREFIX = "fleet/nix";
/** The same closure pushed with a key the host does not trust. */
const ROGUE = "rogue/nix";
/** PREFIX's objects, but the middle path's narinfo is ROGUE's: signed by the untrusted key. */
const MIXED = "mixed/nix";
const CONFIG = "/etc/nixship/agent.json";
/** What main.tf passes to fetch.sh.tftpl (its values: terraform-host-inputs.test.ts). */
const FETCH_VARS = [
  "host_name",
  "nixship_package",
  "cache_public_keys",
  "store_http_url",
  "store_region",
  "fetch_max_paths",
  "fetch_max_bytes",
];

let work: string;
let s3rver: S3Server;
let bucket: ObjectStore;
let imds: Imds;
let s3: SignedS3;
let cachePublic: string;
let releasePublic: string;
/** The package, the path it refers to, and the one that refers to (data ← lib ← pkg). */
let pkg: string;
let lib: string;
let data: string;
const hashOf = (path: string) => path.slice("/nix/store/".length, "/nix/store/".length + 32);
const shims = () => join(work, "shims");
const curlLog = () => join(work, "curl-args.log");

/** A fresh host's disk: its /nix, the upper layer of its /etc, its /var/lib, /root and TMPDIR. */
async function newHost(name: string): Promise<string> {
  const dir = join(work, "hosts", name);
  for (const d of ["nix", "etc-upper", "etc-work", "var-lib", "root", "tmp"]) {
    await mkdir(join(dir, d), { recursive: true });
  }
  return dir;
}

/** Runs sh `script` as root in the host's view of the machine, for a minute at most. */
function inHost(host: string, script: string, env: string[] = []): Promise<CliRun> {
  const setup = [
    "set -e",
    `mount --bind ${host}/nix /nix`,
    `mount -t overlay nixship-prefix-etc -o lowerdir=/etc,upperdir=${host}/etc-upper,workdir=${host}/etc-work /etc`,
    `mount --bind ${host}/var-lib /var/lib`,
    `mount --bind ${host}/root /root`,
    `exec env ${env.join(" ")} sh -c "$1"`,
  ].join("\n");
  return run("timeout", [
    ...["--kill-after=5", "60", "unshare", "--mount", "--propagation", "private"],
    ...["sh", "-c", setup, "sh", script],
  ]);
}

/** Runs the rendered user-data as amazon-init would: as root, on its own, shims first on PATH. */
async function runUserData(host: string, text: string, name: string): Promise<CliRun> {
  const file = join(work, `${name}.sh`);
  await writeFile(file, text, { mode: 0o700 });
  return inHost(host, `exec sh ${file}`, [
    `PATH=${shims()}:/usr/local/bin:/usr/bin:/bin`,
    `TMPDIR=${host}/tmp`,
  ]);
}

async function render(file: string, values: Record<string, TemplateValue>): Promise<string> {
  const rendered = renderTemplate(await readFile(file, "utf8"), values, file);
  expect([...rendered.used].sort()).toEqual(Object.keys(values).sort());
  return rendered.text;
}

/** fetch.sh.tftpl's values for a store under `prefix`, as main.tf gives them (bar the address). */
function fetchValues(
  prefix: string,
  overrides: Record<string, TemplateValue> = {},
): Record<string, TemplateValue> {
  const values = {
    host_name: HOST,
    nixship_package: pkg,
    cache_public_keys: [cachePublic],
    store_http_url: `${s3.url}/${BUCKET}/${prefix}`,
    store_region: REGION,
    fetch_max_paths: 2000,
    fetch_max_bytes: 4294967296,
    ...overrides,
  };
  expect(Object.keys(values).sort()).toEqual([...FETCH_VARS].sort());
  return values;
}

function bootstrapValues(storeUrl: string): Record<string, TemplateValue> {
  return {
    host_name: HOST,
    nixship_package: pkg,
    store_url: storeUrl,
    channel: "production",
    release_public_keys: [releasePublic],
    cache_public_keys: [cachePublic],
    poll_interval: 30,
  };
}

/** An agent host's user-data for a store under `prefix`: the fetch, then the bootstrap. */
async function prefixedUserData(
  prefix: string,
  overrides: Record<string, TemplateValue> = {},
): Promise<string> {
  return userDataOf([
    await render(FETCH, fetchValues(prefix, overrides)),
    await render(BOOTSTRAP, bootstrapValues(`s3://${BUCKET}/${prefix}?region=${REGION}`)),
  ]);
}

/** The stand-ins' calls of `program` so far: its arguments, one string a call. */
async function calls(program: string): Promise<string[]> {
  const text = await readFile(join(work, "calls.log"), "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${program} `))
    .map((line) => line.slice(program.length + 1));
}

/** Which of `paths` the host's store holds (nix-store --check-validity, one by one). */
async function validIn(host: string, paths: readonly string[]): Promise<string[]> {
  const valid: string[] = [];
  for (const path of paths) {
    if ((await inHost(host, `nix-store --check-validity ${path}`)).code === 0) valid.push(path);
  }
  return valid;
}

/** The S3 requests made since `from`, as "METHOD path problem". */
const requestsSince = (from: number) =>
  s3.requests.slice(from).map((q) => `${q.method} ${q.path}${q.problem ? ` ${q.problem}` : ""}`);

async function fileSize(path: string): Promise<number> {
  const info = (await readAll(bucket, `${PREFIX}/${hashOf(path)}.narinfo`))?.toString("utf8");
  return Number(/^FileSize: (\d+)$/m.exec(info ?? "")?.[1]);
}

/** The GETs of a whole closure under `prefix`: each narinfo and each NAR, once. */
async function closureRequests(prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const path of [pkg, lib, data]) {
    const info = (await readAll(bucket, `${PREFIX}/${hashOf(path)}.narinfo`))?.toString("utf8");
    const url = /^URL: (.*)$/m.exec(info ?? "")?.[1];
    out.push(`GET /${BUCKET}/${prefix}/${hashOf(path)}.narinfo`, `GET /${BUCKET}/${prefix}/${url}`);
  }
  return out.sort();
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-prefixed-store-"));

  // A small package of three paths (data ← lib ← pkg), its bin/nixship a stand-in that records
  // how the bootstrap runs it, in the host's /var/lib.
  const nixFile = join(work, "package.nix");
  await writeFile(
    nixFile,
    `let
  text = name: text: derivation {
    inherit name text;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "printf '%s' \\"$text\\" > $out" ];
    PATH = "/usr/bin:/bin";
  };
  data = text "nixship-prefix-data" "data\\n";
  lib = text "nixship-prefix-lib" "lib of \${data}\\n";
in derivation {
  name = "nixship-prefix-pkg";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "mkdir $out $out/bin && printf '%s' \\"$text\\" > $out/bin/nixship && chmod 0555 $out/bin/nixship" ];
  PATH = "/usr/bin:/bin";
  text = "#!/bin/sh\\n# uses \${lib}\\nprintf '%s\\\\n' \\"$*\\" >>/var/lib/nixship-test-invocations.log\\n";
}
`,
  );
  pkg = (await runOk("nix-build", [nixFile, "--no-out-link"])).trim();
  const closure = (await runOk("nix-store", ["-qR", pkg])).trim().split("\n");
  lib = closure.find((p) => p.endsWith("-nixship-prefix-lib")) as string;
  data = closure.find((p) => p.endsWith("-nixship-prefix-data")) as string;
  expect(closure.sort()).toEqual([pkg, lib, data].sort());

  const key = (name: string) => join(work, `${name}.sec`);
  const generate = async (name: string) => {
    const r = await nixship(["key", "generate", "--name", name, "--out", key(name)]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  cachePublic = await generate("cache-1");
  await generate("rogue-1");
  releasePublic = await generate("release-1");

  // nixship push, under two prefixes of s3rver's bucket: the trusted cache and a rogue one.
  s3rver = await startS3Server();
  const at = (prefix: string) =>
    `s3://${s3rver.bucket}/${prefix}?region=us-east-1&endpoint=${encodeURIComponent(s3rver.endpoint)}`;
  for (const [prefix, signer] of [
    [PREFIX, "cache-1"],
    [ROGUE, "rogue-1"],
  ] as const) {
    const pushed = await nixship(["push", pkg, "--to", at(prefix), "--key", key(signer)]);
    expect(pushed.code, pushed.stderr).toBe(0);
  }
  // And to a directory, for the store without a prefix.
  const local = await nixship([
    "push",
    pkg,
    "--to",
    `file://${join(work, "cache")}`,
    "--key",
    key("cache-1"),
  ]);
  expect(local.code, local.stderr).toBe(0);
  bucket = await openStore(s3rver.url);

  imds = await startImds(ROLE);
  s3 = await startSignedS3(REGION, async (req, _payload, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://s3").pathname);
    if (req.method !== "GET" || !path.startsWith(`/${BUCKET}/`)) {
      res.writeHead(405).end();
      return;
    }
    let objectKey = path.slice(BUCKET.length + 2);
    if (objectKey.startsWith(`${MIXED}/`)) {
      const rest = objectKey.slice(MIXED.length + 1);
      objectKey = `${rest === `${hashOf(lib)}.narinfo` ? ROGUE : PREFIX}/${rest}`;
    }
    const found = await bucket.get(objectKey);
    // With the cache module's policies (s3:ListBucket on the cache's keys) a missing key is 404.
    if (found === undefined) {
      res.writeHead(404).end("NoSuchKey");
      return;
    }
    res.writeHead(200, { "content-length": found.info.size });
    found.body.pipe(res);
  });

  // curl with IMDS's address sent to the stand-in, and the other stand-ins, each recording.
  await mkdir(shims());
  await writeCurlShim(shims(), imds.url, curlLog());
  const record = `printf '%s %s\\n' "$(basename "$0")" "$*" >>${join(work, "calls.log")}`;
  for (const [name, body] of [
    ["systemd-run", ""],
    ["systemctl", "echo inactive\nexit 3"],
    // No pause in a test: the asked seconds are recorded.
    ["sleep", ""],
  ] as const) {
    await writeFile(join(shims(), name), `#!/bin/sh\n${record}\n${body}\n`, { mode: 0o755 });
  }
});

afterAll(async () => {
  await imds?.close();
  await s3?.close();
  await bucket?.close();
  await s3rver?.close();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe("an agent host's user-data with a prefixed store", () => {
  let hostB: string;

  it("fetches the closure from under the prefix, every request signed, and Nix realises the package; the bootstrap runs it", async () => {
    hostB = await newHost("b");
    const text = await prefixedUserData(PREFIX);
    // Fetch and bootstrap fit EC2's 16 KiB as they are: the script is kept byte for byte.
    expect(text.startsWith("#!/bin/sh\n")).toBe(true);
    expect([...text].length).toBeLessThan(USER_DATA_LIMIT);
    expect(text).toContain(
      "# nixship bootstrap for host web1, from terraform/modules/host/fetch.sh.tftpl",
    );
    expect(await validIn(hostB, [pkg, lib, data])).toEqual([]);
    // A fresh instance: the role's credentials are not there at the first ask.
    imds.misses = 1;
    const from = s3.requests.length;

    const r = await runUserData(hostB, text, "first");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain(`fetching ${pkg} failed (attempt 1 of 5); trying again`);
    expect(await calls("sleep")).toEqual(["5"]);
    expect(r.stderr).toContain(`fetched ${pkg} from ${s3.url}/${BUCKET}/${PREFIX}`);
    expect(r.stderr).toContain(`nixship is present: ${pkg}`);

    // Each narinfo and NAR of the closure once, from under the prefix, each signed.
    expect(requestsSince(from).sort()).toEqual(await closureRequests(PREFIX));
    expect(s3.requests.slice(from).every((q) => q.signed.includes("x-amz-security-token"))).toBe(
      true,
    );
    // In the host's store now, byte for byte what was built here; rooted; the cache removed.
    expect(await validIn(hostB, [pkg, lib, data])).toEqual([pkg, lib, data]);
    for (const path of [pkg, lib, data]) {
      const there = await inHost(hostB, `nix-store -q --hash ${path}`);
      expect(there.stdout).toBe(await runOk("nix-store", ["-q", "--hash", path]));
    }
    expect(await readlink(join(hostB, "nix", "var", "nix", "gcroots", "nixship-bootstrap"))).toBe(
      pkg,
    );
    expect(await readdir(join(hostB, "tmp"))).toEqual([]);

    // The bootstrap followed: the agent's config names the prefixed store, and the realised
    // package's bin/nixship ran (--once, then as the unit).
    const config = JSON.parse(
      await readFile(join(hostB, "etc-upper", "nixship", "agent.json"), "utf8"),
    ) as { store: string };
    expect(config.store).toBe(`s3://${BUCKET}/${PREFIX}?region=${REGION}`);
    expect(await readFile(join(hostB, "var-lib", "nixship-test-invocations.log"), "utf8")).toBe(
      `agent --once --config ${CONFIG}\n`,
    );
    expect((await calls("systemd-run")).at(-1)).toMatch(
      new RegExp(`--unit=nixship-agent .* ${pkg}/bin/nixship agent --config ${CONFIG}$`),
    );
  });

  it("on the next boot finds nixship present and fetches nothing", async () => {
    const from = s3.requests.length;
    const curlCalls = (await readFile(curlLog(), "utf8")).split("\n").length;
    const r = await runUserData(hostB, await prefixedUserData(PREFIX), "second");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).not.toContain("fetch");
    expect(r.stderr).toContain(`nixship is present: ${pkg}`);
    expect(requestsSince(from)).toEqual([]);
    expect((await readFile(curlLog(), "utf8")).split("\n").length).toBe(curlCalls);
  });
});

describe("an agent host's user-data with a prefixed store, refusing", () => {
  let hostA: string;

  it("a closure with one path signed by an untrusted key: Nix realises none of it, after five bounded attempts", async () => {
    hostA = await newHost("a");
    const from = s3.requests.length;
    const slept = (await calls("sleep")).length;

    const r = await runUserData(hostA, await prefixedUserData(MIXED), "mixed");
    expect(r.code, r.stdout + r.stderr).toBe(1);
    // Nix itself refused the path the rogue key signed (Nix 2.8's words).
    expect(r.stderr).toMatch(
      new RegExp(
        `substitute for '${lib}' .* is not signed by any of the keys in 'trusted-public-keys'`,
      ),
    );
    expect(r.stderr).toContain(`fetching ${pkg} failed (attempt 4 of 5); trying again`);
    expect(r.stderr).toContain(`cannot fetch ${pkg} from ${s3.url}/${BUCKET}/${MIXED}; giving up`);
    expect((await calls("sleep")).slice(slept)).toEqual(["5", "10", "15", "20"]);
    expect(await validIn(hostA, [pkg, lib])).toEqual([]);
    // Each object was fetched once: the later attempts kept the complete files.
    expect(requestsSince(from).sort()).toEqual(await closureRequests(MIXED));
    expect(await readdir(join(hostA, "tmp"))).toEqual([]);
    // The bootstrap never ran.
    expect(await readdir(join(hostA, "etc-upper"))).toEqual([]);
    expect(await readdir(join(hostA, "var-lib"))).toEqual([]);
  });

  it("a closure over the path or byte limit, at once and without another attempt", async () => {
    const slept = (await calls("sleep")).length;
    const paths = await runUserData(
      hostA,
      await prefixedUserData(PREFIX, { fetch_max_paths: 1 }),
      "max-paths",
    );
    expect(paths.code, paths.stdout + paths.stderr).toBe(1);
    expect(paths.stderr).toContain(`the closure of ${pkg} has over 1 paths`);

    // pkg's and lib's NARs are one byte too many together.
    const limit = (await fileSize(pkg)) + (await fileSize(lib)) - 1;
    const bytes = await runUserData(
      hostA,
      await prefixedUserData(PREFIX, { fetch_max_bytes: limit }),
      "max-bytes",
    );
    expect(bytes.code, bytes.stdout + bytes.stderr).toBe(1);
    expect(bytes.stderr).toContain(`the closure of ${pkg} is over ${limit} bytes`);

    for (const r of [paths, bytes]) {
      expect(r.stderr).not.toContain("trying again");
      expect(r.stderr).toContain("giving up");
    }
    expect((await calls("sleep")).slice(slept)).toEqual([]);
    expect(await validIn(hostA, [pkg, lib])).toEqual([]);
    expect(await readdir(join(hostA, "tmp"))).toEqual([]);
  });
});

describe("the user-data's other forms", () => {
  it("with the SSH part too, over 16 KiB: without its comment lines, as main.tf makes it, it still realises and starts nixship", async () => {
    const hostC = await newHost("c");
    const keyFile = join(work, "login");
    await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", keyFile]);
    const pub = (await readFile(`${keyFile}.pub`, "utf8")).trim();
    const logins = [1, 2, 3].map((i) => `${pub} admin${i}@example.org`);
    const parts = [
      await render(SSH, {
        host_name: HOST,
        ssh_host_private_key: "",
        ssh_host_public_key: "",
        ssh_authorized_keys: logins.join("\n"),
        host_key_store: "",
        host_key_url: "",
        host_key_region: "",
      }),
      await render(FETCH, fetchValues(PREFIX)),
      await render(BOOTSTRAP, bootstrapValues(`s3://${BUCKET}/${PREFIX}?region=${REGION}`)),
    ];
    expect([...parts.join("")].length).toBeGreaterThan(USER_DATA_LIMIT);
    const text = userDataOf(parts);
    expect([...text].length).toBeLessThan(USER_DATA_LIMIT);
    expect(text).not.toMatch(/^\s*# /m);

    const r = await runUserData(hostC, text, "stripped");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain(`fetched ${pkg} from ${s3.url}/${BUCKET}/${PREFIX}`);
    expect(await validIn(hostC, [pkg])).toEqual([pkg]);
    expect(await readFile(join(hostC, "root", ".ssh", "authorized_keys"), "utf8")).toContain(
      `${logins.join("\n")}\n`,
    );
    expect(await readFile(join(hostC, "var-lib", "nixship-test-invocations.log"), "utf8")).toBe(
      `agent --once --config ${CONFIG}\n`,
    );
  });

  it("without a prefix: no fetch part, the bootstrap hands the store to Nix's own substituter as before", async () => {
    const hostD = await newHost("d");
    const storeUrl = `file://${join(work, "cache")}`;
    const text = userDataOf([await render(BOOTSTRAP, bootstrapValues(storeUrl))]);
    expect(text).not.toContain("curl");
    const curlCalls = (await readFile(curlLog(), "utf8")).split("\n").length;

    const r = await runUserData(hostD, text, "unprefixed");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain(`realised ${pkg}`);
    expect(await validIn(hostD, [pkg, lib, data])).toEqual([pkg, lib, data]);
    expect((await readFile(curlLog(), "utf8")).split("\n").length).toBe(curlCalls);
  });

  it("never puts a credential on a command line", async () => {
    const args = await readFile(curlLog(), "utf8");
    expect(args).toContain(`--aws-sigv4 aws:amz:${REGION}:s3`);
    expect(args).toMatch(/--max-time \d+ .*--max-filesize \d+/);
    for (const secret of [
      ROLE_CREDENTIALS.accessKeyId,
      ROLE_CREDENTIALS.secretAccessKey,
      ROLE_CREDENTIALS.sessionToken,
      "imds-session-token",
    ]) {
      expect(args).not.toContain(secret);
    }
  });
});
