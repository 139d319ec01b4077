// The cache module's IAM policies, rendered from the
// module's own HCL (each output followed to the aws_iam_policy it names and to the policy
// document behind it), evaluated by a strict IAM evaluator against the requests hosts, agents,
// deployers, readers and the garbage collector make: hosts read the cache and write nothing, an
// agent writes only its own status, the writer publishes (holding a gc lease while it does), a
// reader (a pull request's plan) reads and writes nothing, the collector deletes the cache's own
// objects and nothing that roots them; nothing goes without TLS. A bucket named from bucket_prefix gets the same grants on its
// generated name. Mutated modules show that a policy mistake fails.
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEARTBEAT_STATES, heartbeatKey } from "../src/status/heartbeat.js";
import { hostKeyObjectKey } from "../src/status/host-key-store.js";
import { hostStatusKey, progressKey, STATUS_STATES } from "../src/status/status.js";
import { parseStoreUrl } from "../src/store/url.js";
import {
  type RenderedCache,
  type Role,
  renderCache as renderCachePolicies,
} from "./support/cache-policies.js";
import { evaluateValue, type HclValue } from "./support/hcl-expr.js";
import { evaluate, type IamDecision, validatePolicy } from "./support/iam-policy.js";
import { blocks, loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CACHE_DIR = join(ROOT, "terraform/modules/cache");
const BUCKET = "nixship-test-store";
const NARINFO = "0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.narinfo";
const NAR = "nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.zst";
/** A delta (fetched by hosts as a NAR is) and the note of a pair not worth one. */
const DELTA = "delta/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar";
const DELTA_SKIP =
  "delta/skip/0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym-1b8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.json";
const CACHE_KEYS = ["nix-cache-info", NARINFO, NAR, DELTA];
/** Nix's listing of a NAR's files, beside its narinfo. */
const LISTING = "0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.ls";
const GC_LOCK = "gc/lock.json";
const LEASE = "gc/leases/5f0c2d9e8a7b6c5d4e3f2a1b.json";
const PIN = "gc/pins/installer.json";
const REPORT = "gc/reports/2026-11-26T10-00-00.000Z-0a1b2c3d.json";

/** The module rendered for a key prefix and a bucket named `bucket_name` = BUCKET unless said. */
function renderCache(
  mod: TfModule,
  prefix: string,
  naming: Record<string, HclValue> = { bucket_name: BUCKET },
  bucket = BUCKET,
): Promise<RenderedCache> {
  return renderCachePolicies(mod, prefix, naming, bucket);
}

interface Expectation {
  readonly role: Role;
  readonly action: string;
  /** The object key (for object actions) or, for s3:ListBucket, the s3:prefix asked for. */
  readonly key: string;
  readonly expect: "allow" | "deny";
  /** The nixship-host tag of the role; "web1" unless said. */
  readonly host?: string | null;
  readonly tls?: boolean;
}

/** The expectations these policies break, each as one line naming the request. */
function violations(
  cache: RenderedCache,
  expectations: readonly Expectation[],
  keyPrefix = "",
): string[] {
  const out: string[] = [];
  for (const e of expectations) {
    const host = e.host === undefined ? "web1" : e.host;
    const key = keyPrefix + e.key;
    const list = e.action === "s3:ListBucket";
    const decision: IamDecision = evaluate([cache.policies[e.role], cache.bucketPolicy], {
      action: e.action,
      resource: list ? cache.bucketArn : `${cache.bucketArn}/${key}`,
      context: {
        "aws:SecureTransport": e.tls === false ? "false" : "true",
        ...(host === null ? {} : { "aws:PrincipalTag/nixship-host": host }),
        ...(list ? { "s3:prefix": key } : {}),
      },
    });
    if ((decision === "allow") !== (e.expect === "allow")) {
      const who = host === null ? `${e.role} (untagged)` : `${e.role} (${host})`;
      out.push(
        `${who}: ${e.action} ${list ? `prefix "${key}"` : key} was ${decision}, expected ${e.expect}`,
      );
    }
  }
  return out;
}

const allow = (
  role: Role,
  action: string,
  keys: readonly string[],
  extra: Partial<Expectation> = {},
) => keys.map((key): Expectation => ({ role, action, key, expect: "allow", ...extra }));
const deny = (
  role: Role,
  action: string,
  keys: readonly string[],
  extra: Partial<Expectation> = {},
) => keys.map((key): Expectation => ({ role, action, key, expect: "deny", ...extra }));

/** A shard of a sharded release (release 7 names its digest). */
const SHARD = `release-shards/prod/7/0-${"b".repeat(64)}.json`;
const STATUS_WEB1 = ["status/hosts/web1.json", "status/releases/prod/7/web1/success"];
const STATUS_OTHERS = [
  "status/hosts/web2.json",
  "status/hosts/web10.json",
  "status/releases/prod/7/web2/success",
  "status/releases/prod/7/web10/applying",
];

const HOST_READ: readonly Expectation[] = [
  ...allow("host-read", "s3:GetObject", CACHE_KEYS),
  // A missing narinfo must answer 404, so listing the cache's keys is allowed...
  ...allow("host-read", "s3:ListBucket", [NARINFO, "nar/", "delta/"]),
  // ...but nothing else.
  ...deny("host-read", "s3:ListBucket", ["", "status/", "channels/", "releases/"]),
  ...deny("host-read", "s3:PutObject", [
    ...CACHE_KEYS,
    ...STATUS_WEB1,
    "channels/prod.json",
    "releases/prod/8.json",
  ]),
  ...deny("host-read", "s3:DeleteObject", CACHE_KEYS),
  ...deny("host-read", "s3:GetObject", [
    `secrets/web1/${"a".repeat(64)}`,
    "channels/prod.json",
    "releases/prod/7.json",
    SHARD,
    "status/hosts/web1.json",
    // Only 32 characters then .narinfo, at the store's root, is a narinfo.
    "status/hosts/0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.narinfo",
  ]),
];

const AGENT: readonly Expectation[] = [
  ...allow("agent", "s3:GetObject", [
    ...CACHE_KEYS,
    "channels/prod.json",
    "releases/prod/7.json",
    SHARD,
  ]),
  ...allow("agent", "s3:PutObject", [
    ...STATUS_WEB1,
    "status/releases/prod/8/web1/applying",
    "status/host-keys/web1.pub",
  ]),
  // Its own host key only: another host's would let it read that host's secrets.
  ...deny("agent", "s3:PutObject", ["status/host-keys/web2.pub", "status/host-keys/web10.pub"]),
  // It reads its host key before it publishes it (a missing one answers 404: it may list it),
  // and its own record after a boot and to report drift.
  ...allow("agent", "s3:GetObject", ["status/host-keys/web1.pub", "status/hosts/web1.json"]),
  ...allow("agent", "s3:ListBucket", ["status/host-keys/web1.pub", "status/hosts/web1.json"]),
  ...deny("agent", "s3:ListBucket", ["status/hosts/", "status/hosts/web2.json"]),
  ...deny("agent", "s3:GetObject", ["status/host-keys/web2.pub", "status/host-keys/web1.pub.1"]),
  ...deny("agent", "s3:ListBucket", ["status/host-keys/", "status/host-keys/web2.pub"]),
  ...allow("agent", "s3:ListBucket", ["channels/prod.json", NARINFO]),
  ...deny("agent", "s3:PutObject", [
    ...STATUS_OTHERS,
    "channels/prod.json",
    "releases/prod/8.json",
    SHARD,
    ...CACHE_KEYS,
  ]),
  ...deny("agent", "s3:DeleteObject", [...STATUS_WEB1, "channels/prod.json", SHARD]),
  ...deny("agent", "s3:GetObject", ["status/hosts/web2.json"]),
  ...deny("agent", "s3:ListBucket", ["", "status/"]),
  // Its own secrets bundles, and no other host's; it writes none.
  ...allow("agent", "s3:GetObject", [`secrets/web1/${"a".repeat(64)}`]),
  ...deny("agent", "s3:GetObject", [`secrets/web2/${"a".repeat(64)}`, "secrets/web10/x"]),
  ...deny("agent", "s3:GetObject", [`secrets/web1/${"a".repeat(64)}`], { host: "web2" }),
  ...deny("agent", "s3:PutObject", [`secrets/web1/${"a".repeat(64)}`]),
  // web2's agent writes web2's status, and not web1's.
  ...allow("agent", "s3:PutObject", ["status/hosts/web2.json"], { host: "web2" }),
  ...deny("agent", "s3:PutObject", STATUS_WEB1, { host: "web2" }),
  // A role without the tag writes no status at all.
  ...deny("agent", "s3:PutObject", [...STATUS_WEB1, "status/hosts/.json"], { host: null }),
];

/** Every key web1's agent writes, from the functions that name them. */
const AGENT_WRITES = [
  hostStatusKey("web1"),
  ...STATUS_STATES.map((state) => progressKey("prod", 7, "web1", state)),
  ...HEARTBEAT_STATES.map((state) => heartbeatKey("web1", state, 330)),
  hostKeyObjectKey("web1"),
];
// An agent writes exactly the keys agents write. Anything more under its own prefixes
// is keys a reader would list (readers take a bounded number per host anyway), and a key with
// more segments than a marker's can stand under another host's name.
const AGENT_EXACT: readonly Expectation[] = [
  ...allow("agent", "s3:PutObject", AGENT_WRITES),
  ...deny("agent", "s3:PutObject", [
    "status/releases/prod/7/web1/junk-1",
    "status/releases/prod/7/web1/success/1",
    "status/releases/prod/7/web2/x/web1/success",
    "status/releases/prod/7/web2/success/web1/failed",
    "status/heartbeats/web1/junk-1",
    "status/heartbeats/web1/online/330",
    "status/heartbeats/web1/running/330/x",
    "status/heartbeats/web2/x/web1/running/330",
    "status/hosts/web1.json.1",
    "status/host-keys/web1.pub.1",
    "status/web1/x",
  ]),
];

const WRITER: readonly Expectation[] = [
  ...allow("writer", "s3:PutObject", [
    ...CACHE_KEYS,
    "releases/prod/8.json",
    // Who published release 8 and from what, signed beside it.
    "releases/prod/8.origin.json",
    SHARD,
    "channels/prod.json",
    "status/hosts/web1.json",
    // A deploy's rollout record, what the dashboard shows of it as it runs.
    "status/rollouts/9999998234567-0123456789ab.json",
    DELTA_SKIP,
  ]),
  ...allow("writer", "s3:GetObject", [
    ...CACHE_KEYS,
    DELTA_SKIP,
    "channels/prod.json",
    SHARD,
    ...STATUS_WEB1,
  ]),
  // A delta replaces the skip note of its pair (and a note a refused delta).
  ...allow("writer", "s3:DeleteObject", [DELTA_SKIP]),
  ...allow("writer", "s3:ListBucket", ["delta/", DELTA]),
  ...allow("writer", "s3:DeleteObject", ["releases/prod/8.json", "releases/prod/8.origin.json"]),
  ...allow("writer", "s3:PutObject", [`secrets/web1/${"a".repeat(64)}`]),
  ...allow("writer", "s3:GetObject", [`secrets/web1/${"a".repeat(64)}`]),
  ...deny("writer", "s3:DeleteObject", [`secrets/web1/${"a".repeat(64)}`]),
  ...allow("writer", "s3:AbortMultipartUpload", [NAR, DELTA]),
  ...allow("writer", "s3:ListBucket", ["", "releases/prod/", "status/releases/prod/7/", NARINFO]),
  // Progress markers are the agents' word about themselves.
  ...deny("writer", "s3:PutObject", ["status/releases/prod/7/web1/success"]),
  // A publisher that loses a race leaves its shards (no release names them): it deletes none.
  ...deny("writer", "s3:DeleteObject", [
    "channels/prod.json",
    SHARD,
    NARINFO,
    "status/hosts/web1.json",
  ]),
  // A push or deploy holds its lease and looks for a collection's lock; it pins and unpins.
  ...allow("writer", "s3:PutObject", [LEASE, PIN]),
  ...allow("writer", "s3:GetObject", [LEASE, GC_LOCK, PIN]),
  ...allow("writer", "s3:DeleteObject", [LEASE, PIN]),
  ...allow("writer", "s3:ListBucket", ["gc/leases/", "gc/pins/", GC_LOCK]),
  // The lock is the collector's, and so is deleting from the cache.
  ...deny("writer", "s3:PutObject", [GC_LOCK]),
  ...deny("writer", "s3:DeleteObject", [GC_LOCK, NAR, DELTA, LISTING, "nix-cache-info"]),
];

// A plan in a pull request, or whoever only looks: reads what nixship reads, writes nothing.
const READER: readonly Expectation[] = [
  ...allow("reader", "s3:GetObject", [
    ...CACHE_KEYS,
    "channels/prod.json",
    "releases/prod/7.json",
    "releases/prod/7.origin.json",
    SHARD,
    ...STATUS_WEB1,
    ...STATUS_OTHERS,
    "status/heartbeats/web1/online/30",
    "status/rollouts/9999998234567-0123456789ab.json",
    // What a plan says of a pair not worth a delta.
    DELTA_SKIP,
  ]),
  // What the dashboard lists: channels, releases, records, rollouts, heartbeats, markers.
  ...allow("reader", "s3:ListBucket", [
    NARINFO,
    "channels/",
    "channels/prod.json",
    "releases/",
    "status/hosts/",
    "status/rollouts/",
    "releases/prod/",
    "status/releases/prod/7/",
    "status/heartbeats/web1/",
  ]),
  ...deny("reader", "s3:ListBucket", ["", "secrets/"]),
  // Secrets bundles are ciphertexts, but only their hosts and the deployer need them.
  ...deny("reader", "s3:GetObject", [`secrets/web1/${"a".repeat(64)}`]),
  ...deny("reader", "s3:PutObject", [
    ...CACHE_KEYS,
    "channels/prod.json",
    "releases/prod/8.json",
    ...STATUS_WEB1,
    "status/host-keys/web1.pub",
  ]),
  ...deny("reader", "s3:DeleteObject", [NARINFO, "channels/prod.json", "releases/prod/7.json"]),
  ...deny("reader", "s3:AbortMultipartUpload", [NAR]),
];

// `nixship cache gc`: reads what roots the cache, holds the lock, tidies lapsed leases and
// deletes the cache's own objects; it writes no cache object and deletes nothing that roots one.
const SECRETS_BUNDLE = `secrets/web1/${"a".repeat(64)}`;
const ROOTS = [
  "channels/prod.json",
  "releases/prod/7.json",
  SHARD,
  ...STATUS_WEB1,
  ...STATUS_OTHERS,
  "status/heartbeats/web1/online/30",
  "status/host-keys/web1.pub",
];
const COLLECTOR: readonly Expectation[] = [
  // nix-cache-info, which every cache command reads first (cache gc, cache stats).
  ...allow("collector", "s3:GetObject", [
    "nix-cache-info",
    NARINFO,
    ...ROOTS,
    PIN,
    GC_LOCK,
    LEASE,
    REPORT,
  ]),
  ...allow("collector", "s3:DeleteObject", [
    NARINFO,
    LISTING,
    NAR,
    DELTA,
    DELTA_SKIP,
    GC_LOCK,
    LEASE,
    REPORT,
  ]),
  // Its lock, and the reports of what it deleted (the newest 20 kept).
  ...allow("collector", "s3:PutObject", [GC_LOCK, REPORT]),
  // The store's root (the inventory), nar/, the folders it reads roots and leases from, and
  // the keys it GETs, so that a missing one answers 404.
  ...allow("collector", "s3:ListBucket", [
    "",
    "nix-cache-info",
    "nar/",
    "delta/",
    NARINFO,
    "channels/",
    "releases/",
    "releases/prod/",
    "status/hosts/",
    "status/releases/prod/7/",
    "gc/leases/",
    "gc/pins/",
    "gc/reports/",
    GC_LOCK,
    "channels/prod.json",
  ]),
  // The secrets bundles and release shards no kept release names: listed (never read), and
  // deleted once past the grace period.
  ...allow("collector", "s3:ListBucket", ["secrets/", "secrets/web1/", "release-shards/"]),
  ...allow("collector", "s3:DeleteObject", [SECRETS_BUNDLE, SHARD]),
  // What roots the cache, and what is not the cache's, stays whatever it decides.
  ...deny("collector", "s3:DeleteObject", [
    ...ROOTS.filter((key) => key !== SHARD),
    "releases/prod/8.json",
    PIN,
    "nix-cache-info",
    // Only 32 characters then .narinfo or .ls, at the store's root, is the cache's.
    "status/hosts/0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.narinfo",
    "releases/0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.ls",
  ]),
  // It writes nothing but its lock and its reports: no cache object, no pin, no lease of its own.
  ...deny("collector", "s3:PutObject", [
    ...CACHE_KEYS,
    LISTING,
    PIN,
    LEASE,
    "channels/prod.json",
    "releases/prod/8.json",
    "status/hosts/web1.json",
    SECRETS_BUNDLE,
  ]),
  ...deny("collector", "s3:AbortMultipartUpload", [NAR]),
  // It marks through narinfos and never needs a NAR's bytes, or a secret.
  ...deny("collector", "s3:GetObject", [NAR, DELTA, SECRETS_BUNDLE]),
];

const NO_TLS: readonly Expectation[] = (
  ["host-read", "agent", "writer", "reader", "collector"] as const
).flatMap((role) => deny(role, "s3:GetObject", ["nix-cache-info"], { tls: false }));

let cacheModule: TfModule;
let cache: RenderedCache;

beforeAll(async () => {
  cacheModule = await loadModule(CACHE_DIR, ROOT);
  cache = await renderCache(cacheModule, "");
});

describe("the cache module's policies, rendered from the HCL and evaluated", () => {
  it("host-read reads the cache keys and nothing else, and writes nothing", () => {
    expect(violations(cache, HOST_READ)).toEqual([]);
  });

  it("an agent reads the cache, channels and releases, and writes only its own status", () => {
    expect(violations(cache, AGENT)).toEqual([]);
  });

  it("an agent writes exactly the keys agents write: nothing else under its prefixes, nothing deeper", () => {
    expect(violations(cache, AGENT_EXACT)).toEqual([]);
    // The keys are the agent's own: web2's agent writes none of web1's.
    expect(
      violations(cache, deny("agent", "s3:PutObject", AGENT_WRITES, { host: "web2" })),
    ).toEqual([]);
  });

  it("the writer pushes to the cache, publishes releases, moves channels and records push deploys", () => {
    expect(violations(cache, WRITER)).toEqual([]);
  });

  it("the reader reads the cache, releases and every host's status, and writes nothing", () => {
    expect(violations(cache, READER)).toEqual([]);
    // Nothing but reading: its statements grant s3:GetObject and s3:ListBucket only.
    const actions = cache.policies.reader.Statement.flatMap((st) =>
      typeof st.Action === "string" ? [st.Action] : [...(st.Action ?? [])],
    );
    expect([...new Set(actions)].sort()).toEqual(["s3:GetObject", "s3:ListBucket"]);
  });

  it("the collector deletes narinfos, listings, NARs, and bundles and shards no release names, holds its lock, tidies leases and keeps its reports, and no more", () => {
    expect(violations(cache, COLLECTOR)).toEqual([]);
    // The lock and its reports are the only keys it may put.
    const puts = cache.policies.collector.Statement.filter((st) =>
      [st.Action ?? []].flat().includes("s3:PutObject"),
    ).flatMap((st) => [st.Resource ?? []].flat());
    expect(puts).toEqual([`${cache.bucketArn}/${GC_LOCK}`, `${cache.bucketArn}/gc/reports/*`]);
  });

  it("the bucket policy refuses every request without TLS", () => {
    expect(violations(cache, NO_TLS)).toEqual([]);
    expect(cache.bucketPolicy.Statement).toHaveLength(1);
  });

  it('with prefix = "nix" every grant moves under nix/, and the store URL says so', async () => {
    const prefixed = await renderCache(cacheModule, "nix/");
    const all = [
      ...HOST_READ,
      ...AGENT,
      ...AGENT_EXACT,
      ...WRITER,
      ...READER,
      ...COLLECTOR,
      ...NO_TLS,
    ];
    expect(violations(prefixed, all, "nix/")).toEqual([]);
    // Outside the prefix, nothing is granted.
    const outside = [
      ...deny("host-read", "s3:GetObject", CACHE_KEYS),
      ...deny("agent", "s3:PutObject", STATUS_WEB1),
      ...deny("writer", "s3:PutObject", ["channels/prod.json"]),
      ...deny("writer", "s3:ListBucket", [""]),
      ...deny("collector", "s3:ListBucket", ["", "nar/"]),
      ...deny("collector", "s3:DeleteObject", [NARINFO, NAR, GC_LOCK]),
    ];
    expect(violations(prefixed, outside)).toEqual([]);
    expect(prefixed.storeUrl).toBe(`s3://${BUCKET}/nix?region=eu-west-1`);
    expect(parseStoreUrl(prefixed.storeUrl, {})).toMatchObject({ bucket: BUCKET, prefix: "nix" });
  });

  it("store_url is a store URL nixship opens: s3://BUCKET?region=REGION", () => {
    expect(cache.storeUrl).toBe(`s3://${BUCKET}?region=eu-west-1`);
    expect(parseStoreUrl(cache.storeUrl, {})).toMatchObject({
      bucket: BUCKET,
      prefix: "",
      region: "eu-west-1",
    });
  });
});

describe("versioning and what cache gc frees", () => {
  it("with versioning, old versions expire after noncurrent_version_days; without, no such rule", async () => {
    const lifecycle = cacheModule.resources.get("aws_s3_bucket_lifecycle_configuration.this")
      ?.body as Record<string, unknown>;
    const dynamic = blocks((lifecycle.dynamic as Record<string, unknown>).rule)[0] as Record<
      string,
      unknown
    >;
    const forEach = (vars: Record<string, HclValue>) =>
      evaluateValue(
        dynamic.for_each,
        moduleResolver(cacheModule, { vars: { bucket_name: BUCKET, ...vars } }),
      );
    expect(await forEach({})).toEqual([]);
    expect(await forEach({ versioning: true })).toEqual([30]);
    expect(await forEach({ versioning: true, noncurrent_version_days: 7 })).toEqual([7]);
    const content = blocks(dynamic.content)[0] as Record<string, unknown>;
    expect(blocks(content.noncurrent_version_expiration)[0]).toEqual({
      // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of a reference.
      noncurrent_days: "${rule.value}",
    });
    expect(blocks(content.expiration)[0]).toEqual({ expired_object_delete_marker: true });
    // The multipart rule stays, versioned or not.
    expect(blocks(lifecycle.rule).map((r) => (r as { id: string }).id)).toEqual([
      "abort-incomplete-uploads",
    ]);
  });
});

describe("the bucket's name: bucket_name, or generated from bucket_prefix", () => {
  const GENERATED = "nixship-test-20250301123456000000000001";
  const bucketBody = () => cacheModule.resources.get("aws_s3_bucket.this")?.body ?? {};
  const render = (vars: Record<string, HclValue>) => (value: unknown) =>
    evaluateValue(value, moduleResolver(cacheModule, { vars }));

  it("passes bucket_prefix to AWS only when no bucket_name is given", async () => {
    const prefixed = render({ bucket_prefix: "nixship-test-" });
    expect(await prefixed(bucketBody().bucket)).toBeNull();
    expect(await prefixed(bucketBody().bucket_prefix)).toBe("nixship-test-");
    const named = render({ bucket_name: BUCKET });
    expect(await named(bucketBody().bucket)).toBe(BUCKET);
    expect(await named(bucketBody().bucket_prefix)).toBeNull();
  });

  it("needs exactly one of the two, and a prefix AWS accepts", async () => {
    const [precondition] = blocks(blocks(bucketBody().lifecycle)[0]?.precondition);
    const holds = (vars: Record<string, HclValue>) => render(vars)(precondition?.condition);
    expect(await holds({ bucket_name: BUCKET })).toBe(true);
    expect(await holds({ bucket_prefix: "nixship-test-" })).toBe(true);
    expect(await holds({})).toBe(false);
    expect(await holds({ bucket_name: BUCKET, bucket_prefix: "nixship-test-" })).toBe(false);
    const valid = async (name: string, value: HclValue) => {
      for (const file of cacheModule.files) {
        const variables = (file.body.variable ?? {}) as Record<string, Record<string, unknown>[]>;
        const validation = blocks(variables[name]?.[0]?.validation)[0];
        if (validation) return render({ [name]: value })(validation.condition);
      }
      throw new Error(`no validation of ${name}`);
    };
    expect(await valid("bucket_prefix", null)).toBe(true);
    expect(await valid("bucket_prefix", "nixship-test-")).toBe(true);
    expect(await valid("bucket_prefix", "a".repeat(37))).toBe(true);
    expect(await valid("bucket_prefix", "a".repeat(38))).toBe(false);
    expect(await valid("bucket_prefix", "Nixship-")).toBe(false);
    expect(await valid("bucket_prefix", "-nixship")).toBe(false);
    expect(await valid("bucket_name", null)).toBe(true);
    expect(await valid("bucket_name", BUCKET)).toBe(true);
    expect(await valid("bucket_name", "x")).toBe(false);
  });

  it("grants every role the same on the generated bucket, and names the policies after it", async () => {
    const generated = await renderCache(
      cacheModule,
      "",
      { bucket_prefix: "nixship-test-" },
      GENERATED,
    );
    expect(
      violations(generated, [
        ...HOST_READ,
        ...AGENT,
        ...WRITER,
        ...READER,
        ...COLLECTOR,
        ...NO_TLS,
      ]),
    ).toEqual([]);
    expect(generated.policyNames).toEqual({
      "host-read": `${GENERATED}-host-read`,
      agent: `${GENERATED}-agent`,
      writer: `${GENERATED}-writer`,
      reader: `${GENERATED}-reader`,
      collector: `${GENERATED}-collector`,
    });
    expect(generated.storeUrl).toBe(`s3://${GENERATED}?region=eu-west-1`);
    // Nothing is granted on a bucket of the prefix's other names.
    const other = { ...generated, bucketArn: `arn:aws:s3:::nixship-test-other` };
    expect(violations(other, allow("writer", "s3:PutObject", ["channels/prod.json"]))).toEqual([
      "writer (web1): s3:PutObject channels/prod.json was implicit-deny, expected allow",
    ]);
    // With a fixed name, the policies keep the names they always had.
    expect(cache.policyNames.writer).toBe(`${BUCKET}-writer`);
  });
});

describe("a policy mistake in the module fails these expectations", () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "nixship-tf-iam-"));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** The cache module with `from` replaced by `to` in main.tf, rendered. */
  async function mutated(name: string, from: string, to: string): Promise<RenderedCache> {
    const dir = join(work, name);
    await cp(CACHE_DIR, dir, { recursive: true });
    const text = await readFile(join(dir, "main.tf"), "utf8");
    expect(text, `the mutation's text is in main.tf: ${from}`).toContain(from);
    await writeFile(join(dir, "main.tf"), text.replace(from, to));
    return renderCache(await loadModule(dir, work), "");
  }

  it("agents' status keys not tied to the role's tag: an agent may write other hosts' status", async () => {
    const broken = await mutated(
      "any-host",
      'own_host = "$${aws:PrincipalTag/nixship-host}"',
      'own_host = "*"',
    );
    const bundle = "a".repeat(64);
    expect(violations(broken, AGENT)).toEqual([
      "agent (web1): s3:PutObject status/host-keys/web2.pub was allow, expected deny",
      "agent (web1): s3:PutObject status/host-keys/web10.pub was allow, expected deny",
      'agent (web1): s3:ListBucket prefix "status/hosts/web2.json" was allow, expected deny',
      "agent (web1): s3:GetObject status/host-keys/web2.pub was allow, expected deny",
      'agent (web1): s3:ListBucket prefix "status/host-keys/web2.pub" was allow, expected deny',
      "agent (web1): s3:PutObject status/hosts/web2.json was allow, expected deny",
      "agent (web1): s3:PutObject status/hosts/web10.json was allow, expected deny",
      "agent (web1): s3:PutObject status/releases/prod/7/web2/success was allow, expected deny",
      "agent (web1): s3:PutObject status/releases/prod/7/web10/applying was allow, expected deny",
      "agent (web1): s3:GetObject status/hosts/web2.json was allow, expected deny",
      `agent (web1): s3:GetObject secrets/web2/${bundle} was allow, expected deny`,
      "agent (web1): s3:GetObject secrets/web10/x was allow, expected deny",
      `agent (web2): s3:GetObject secrets/web1/${bundle} was allow, expected deny`,
      "agent (web2): s3:PutObject status/hosts/web1.json was allow, expected deny",
      "agent (web2): s3:PutObject status/releases/prod/7/web1/success was allow, expected deny",
      "agent (untagged): s3:PutObject status/hosts/web1.json was allow, expected deny",
      "agent (untagged): s3:PutObject status/releases/prod/7/web1/success was allow, expected deny",
      "agent (untagged): s3:PutObject status/hosts/.json was allow, expected deny",
    ]);
  });

  it("an agent's markers and heartbeats granted as <host>/*: it may write keys no agent writes", async () => {
    const broken = await mutated(
      "own-prefixes",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Terraform's interpolation, quoted.
      'for state in ["applying", "success", "failed", "rejected"] :\n    "${local.store_arn}status/releases/*/*/${local.own_host}/${state}"],\n    [for state in ["running", "paused"] :\n    "${local.store_arn}status/heartbeats/${local.own_host}/${state}/*"]',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Terraform's interpolation, quoted.
      'for state in ["*"] :\n    "${local.store_arn}status/releases/*/*/${local.own_host}/${state}"],\n    [for state in ["*"] :\n    "${local.store_arn}status/heartbeats/${local.own_host}/${state}"]',
    );
    expect(violations(broken, AGENT_EXACT)).toEqual([
      "agent (web1): s3:PutObject status/releases/prod/7/web1/junk-1 was allow, expected deny",
      "agent (web1): s3:PutObject status/heartbeats/web1/junk-1 was allow, expected deny",
      "agent (web1): s3:PutObject status/heartbeats/web1/online/330 was allow, expected deny",
    ]);
  });

  it("without the deny of deeper keys: an agent may write keys under another host's name", async () => {
    const broken = await mutated(
      "deeper-keys",
      'effect    = "Deny"\n    actions   = ["s3:PutObject"]\n    resources = local.deeper_status_objects',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Terraform's interpolation, quoted.
      'effect    = "Deny"\n    actions   = ["s3:PutObject"]\n    resources = ["${local.store_arn}nothing"]',
    );
    expect(violations(broken, AGENT_EXACT)).toEqual([
      "agent (web1): s3:PutObject status/releases/prod/7/web2/x/web1/success was allow, expected deny",
      "agent (web1): s3:PutObject status/releases/prod/7/web2/success/web1/failed was allow, expected deny",
      "agent (web1): s3:PutObject status/heartbeats/web1/running/330/x was allow, expected deny",
    ]);
  });

  it("host-read given s3:PutObject: the host could write the cache", async () => {
    const broken = await mutated(
      "host-writes",
      'sid       = "ReadCache"\n    actions   = ["s3:GetObject"]',
      'sid       = "ReadCache"\n    actions   = ["s3:GetObject", "s3:PutObject"]',
    );
    expect(violations(broken, HOST_READ)).toEqual(
      CACHE_KEYS.map((k) => `host-read (web1): s3:PutObject ${k} was allow, expected deny`),
    );
  });

  it("the collector allowed to delete the whole store: it could delete what roots the cache", async () => {
    const broken = await mutated(
      "collector-deletes-all",
      'sid       = "DeleteCacheObjects"\n    actions   = ["s3:DeleteObject"]\n    resources = local.collectable_objects',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Terraform's interpolation, quoted.
      'sid       = "DeleteCacheObjects"\n    actions   = ["s3:DeleteObject"]\n    resources = ["${local.store_arn}*"]',
    );
    const kept = COLLECTOR.filter((e) => e.action === "s3:DeleteObject" && e.expect === "deny");
    expect(violations(broken, COLLECTOR)).toEqual(
      kept.map((e) => `collector (web1): s3:DeleteObject ${e.key} was allow, expected deny`),
    );
    expect(kept.map((e) => e.key)).toEqual(
      expect.arrayContaining([
        "releases/prod/7.json",
        "channels/prod.json",
        "status/hosts/web1.json",
      ]),
    );
  });

  it("the evaluator refuses what it cannot read rather than guessing", async () => {
    const doc = {
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }],
    };
    expect(() => validatePolicy({ ...doc, Version: "2008-10-17" }, "old")).toThrow(/Version/);
    const withCondition = (op: string): unknown => ({
      ...doc,
      Statement: [{ ...doc.Statement[0], Condition: { [op]: { "s3:prefix": ["x"] } } }],
    });
    expect(() => validatePolicy(withCondition("ArnLike"), "arn")).toThrow(/ArnLike/);
    expect(() => validatePolicy(withCondition("StringLikeIfExists"), "ok")).not.toThrow();
    const typo = { ...doc, Statement: [{ ...doc.Statement[0], Resources: "*" }] };
    expect(() => validatePolicy(typo, "typo")).toThrow(/unknown element Resources/);
  });
});

describe("docs/agent.md", () => {
  it("shows the module's agent policy for s3://my-fleet/prod, word for word", async () => {
    const doc = await readFile(join(ROOT, "docs/agent.md"), "utf8");
    const section = doc.slice(doc.indexOf("## Store permissions (IAM)"));
    const shown = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
    const rendered = await renderCache(
      cacheModule,
      "prod",
      { bucket_name: "my-fleet" },
      "my-fleet",
    );
    expect(shown).toBe(JSON.stringify(rendered.policies.agent, null, 2));
  });
});
