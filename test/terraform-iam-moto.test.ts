// The cache module's IAM policies, rendered from its HCL as terraform-iam.test.ts renders them,
// enforced by an IAM that is not ours: moto's server with IAM on (moto-server.ts, `iam`). Each
// role's policy is attached to a user of moto's (the agent's tagged nixship-host, as the host
// module tags each host's role), and moto decides every request made with that user's keys.
//
// First, moto and the project's IAM evaluator (iam-policy.ts) judge the same requests of every
// role: they agree on each but the ones moto cannot judge (listed below, with why), so a policy
// that AWS would read otherwise than the evaluator shows up here too.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEARTBEAT_STATES, heartbeatKey } from "../src/status/heartbeat.js";
import { hostKeyObjectKey } from "../src/status/host-key-store.js";
import { hostStatusKey, progressKey, STATUS_STATES } from "../src/status/status.js";
import type { AwsKeys } from "../support/aws-query.js";
import { nixship } from "../support/cli.js";
import { type MotoServer, startMotoServer } from "../support/moto-server.js";
import { OUTPUT_OF, type RenderedCache, type Role, renderCache } from "./support/cache-policies.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";
import { evaluate } from "./support/iam-policy.js";
import { createMotoUser, s3ClientWith, withKeys } from "./support/moto-iam.js";
import { loadModule } from "./support/terraform.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CACHE_DIR = join(ROOT, "terraform/modules/cache");
const HOST = "web1";
const NARINFO = "0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.narinfo";
const BUNDLE = `${"a".repeat(64)}`;

type Action = "s3:GetObject" | "s3:PutObject" | "s3:DeleteObject" | "s3:ListBucket";

/** moto's verdict on one request: "allow" (whatever the answer, it was not refused) or "deny". */
async function motoDecides(
  s3: S3Client,
  bucket: string,
  action: Action,
  key: string,
): Promise<"allow" | "deny"> {
  const command =
    action === "s3:GetObject"
      ? new GetObjectCommand({ Bucket: bucket, Key: key })
      : action === "s3:PutObject"
        ? new PutObjectCommand({ Bucket: bucket, Key: key, Body: "x" })
        : action === "s3:DeleteObject"
          ? new DeleteObjectCommand({ Bucket: bucket, Key: key })
          : new ListObjectsV2Command({ Bucket: bucket, Prefix: key, MaxKeys: 1 });
  try {
    await s3.send(command as GetObjectCommand);
    return "allow";
  } catch (err) {
    const name = (err as { name?: string }).name;
    if (name === "AccessDenied") return "deny";
    if (name === "NoSuchKey") return "allow";
    throw new Error(`${action} ${key}: moto answered ${name}: ${err}`);
  }
}

/** The keys every role is asked about: every kind nixship writes, others' and nobody's. */
const KEYS = [
  "nix-cache-info",
  NARINFO,
  "nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.zst",
  "0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.ls",
  // Only 32 characters then .narinfo is a narinfo: "." is not a wildcard.
  "0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ymxnarinfo",
  "status/hosts/0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.narinfo",
  "channels/prod.json",
  "releases/prod/7.json",
  "releases/prod/7.origin.json",
  `release-shards/prod/7/0-${"b".repeat(64)}.json`,
  hostStatusKey(HOST),
  hostStatusKey("web2"),
  hostStatusKey("web10"),
  "status/hosts/web1xjson",
  ...STATUS_STATES.map((state) => progressKey("prod", 7, HOST, state)),
  progressKey("prod", 7, "web2", "success"),
  ...HEARTBEAT_STATES.map((state) => heartbeatKey(HOST, state, 330)),
  heartbeatKey("web2", "running", 330),
  hostKeyObjectKey(HOST),
  hostKeyObjectKey("web2"),
  "status/releases/prod/7/web2/x/web1/success",
  "status/heartbeats/web1/running/330/x",
  "status/rollouts/9999998234567-0123456789ab.json",
  `secrets/${HOST}/${BUNDLE}`,
  `secrets/web2/${BUNDLE}`,
  "gc/lock.json",
  "gc/leases/5f0c2d9e8a7b6c5d4e3f2a1b.json",
  "gc/pins/installer.json",
  "gc/reports/2026-11-26T10-00-00.000Z-0a1b2c3d.json",
];
const LIST_PREFIXES = [
  "",
  "status/",
  "secrets/",
  "channels/",
  "releases/prod/",
  NARINFO,
  "nar/",
  hostKeyObjectKey(HOST),
];

/**
 * Where moto and AWS part, on these requests: moto evaluates no Condition of an identity
 * policy, so each s3:ListBucket statement grants its listing whatever the s3:prefix. Each line
 * is a listing the policy keeps to some prefixes that moto lets any prefix through.
 */
const MOTO_IGNORES_CONDITIONS = [
  'host-read: s3:ListBucket "" moto allow, AWS implicit-deny',
  'host-read: s3:ListBucket "status/" moto allow, AWS implicit-deny',
  'host-read: s3:ListBucket "secrets/" moto allow, AWS implicit-deny',
  'host-read: s3:ListBucket "channels/" moto allow, AWS implicit-deny',
  'host-read: s3:ListBucket "releases/prod/" moto allow, AWS implicit-deny',
  `host-read: s3:ListBucket "${hostKeyObjectKey(HOST)}" moto allow, AWS implicit-deny`,
  'agent: s3:ListBucket "" moto allow, AWS implicit-deny',
  'agent: s3:ListBucket "status/" moto allow, AWS implicit-deny',
  'agent: s3:ListBucket "secrets/" moto allow, AWS implicit-deny',
  'reader: s3:ListBucket "" moto allow, AWS implicit-deny',
  'reader: s3:ListBucket "secrets/" moto allow, AWS implicit-deny',
];

let moto: MotoServer;
let cache: RenderedCache;
const keys = {} as Record<Role, AwsKeys>;

beforeAll(async () => {
  moto = await startMotoServer("nixship-iam-moto", { iam: true });
  cache = await renderCache(
    await loadModule(CACHE_DIR, ROOT),
    "",
    { bucket_name: moto.bucket },
    moto.bucket,
  );
  const iam = { endpoint: moto.endpoint, service: "iam", keys: moto.admin as AwsKeys };
  for (const role of Object.keys(OUTPUT_OF) as Role[]) {
    keys[role] = await createMotoUser(iam, {
      name: `${role}-${HOST}`,
      tags: { "nixship-host": HOST },
      policies: { [cache.policyNames[role]]: cache.policies[role] },
    });
  }
});

afterAll(async () => {
  await moto?.close();
});

describe("moto's IAM and the project's evaluator, on the cache module's policies", () => {
  it("judge every role's requests alike, but for the conditions moto does not evaluate", async () => {
    const differ: string[] = [];
    let asked = 0;
    for (const role of Object.keys(OUTPUT_OF) as Role[]) {
      const s3 = s3ClientWith(moto.endpoint, keys[role]);
      try {
        const requests: [Action, string][] = [
          ...KEYS.flatMap((key) =>
            (["s3:GetObject", "s3:PutObject", "s3:DeleteObject"] as const).map(
              (action): [Action, string] => [action, key],
            ),
          ),
          ...LIST_PREFIXES.map((prefix): [Action, string] => ["s3:ListBucket", prefix]),
        ];
        for (const [action, key] of requests) {
          const list = action === "s3:ListBucket";
          const aws = evaluate([cache.policies[role]], {
            action,
            resource: list ? cache.bucketArn : `${cache.bucketArn}/${key}`,
            context: {
              "aws:SecureTransport": "true",
              "aws:PrincipalTag/nixship-host": HOST,
              ...(list ? { "s3:prefix": key } : {}),
            },
          });
          const got = await motoDecides(s3, moto.bucket, action, key);
          asked++;
          if ((got === "allow") !== (aws === "allow")) {
            differ.push(`${role}: ${action} ${list ? `"${key}"` : key} moto ${got}, AWS ${aws}`);
          }
        }
      } finally {
        s3.destroy();
      }
    }
    expect(asked).toBe(5 * (KEYS.length * 3 + LIST_PREFIXES.length));
    expect(differ).toEqual(MOTO_IGNORES_CONDITIONS);
  });
});

/** Removes what the requests above left (with moto's admin keys): a bucket of the cache's own. */
async function emptyBucket(): Promise<void> {
  const s3 = s3ClientWith(moto.endpoint, moto.admin as AwsKeys);
  try {
    for (let page = 0; page < 100; page++) {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: moto.bucket }));
      const objects = (listed.Contents ?? []).map((o) => ({ Key: o.Key as string }));
      if (objects.length === 0) return;
      await s3.send(
        new DeleteObjectsCommand({ Bucket: moto.bucket, Delete: { Objects: objects } }),
      );
    }
    throw new Error(`the bucket ${moto.bucket} is still not empty after 100 pages`);
  } finally {
    s3.destroy();
  }
}

describe("the roles' commands, each with its role's keys only", () => {
  it("the collector runs cache gc and cache stats on what the writer pushed; the reader is refused, by its policy", async () => {
    const work = await mkdtemp(join(tmpdir(), "nixship-iam-moto-"));
    try {
      const secret = join(work, "cache.sec");
      expect((await nixship(["key", "generate", "--name", "iam-1", "--out", secret])).code).toBe(0);
      await emptyBucket();
      const writer = withKeys(keys.writer);
      const init = await nixship(["cache", "init", moto.url], { env: writer });
      expect(init.code, init.stderr).toBe(0);
      const root = await buildFixtureClosure();
      const push = await nixship(["push", root, "--to", moto.url, "--key", secret], {
        env: writer,
      });
      expect(push.code, push.stderr).toBe(0);

      const collector = withKeys(keys.collector);
      const stats = await nixship(["cache", "stats", "--cache", moto.url, "--json"], {
        env: collector,
      });
      expect(stats.code, stats.stderr).toBe(0);
      expect((JSON.parse(stats.stdout) as { paths: number }).paths).toBeGreaterThan(0);
      // A collection: the lock taken and given back, every root read, the young paths kept.
      const gc = await nixship(["cache", "gc", "--cache", moto.url, "--json"], { env: collector });
      expect(gc.code, gc.stderr).toBe(0);
      expect(JSON.parse(gc.stdout)).toMatchObject({ dryRun: false, problems: [] });
      // The reader may not collect: the refusal names the policy, not the keys, as the fault.
      const refused = await nixship(["cache", "gc", "--cache", moto.url], {
        env: withKeys(keys.reader),
      });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/AccessDenied \(HTTP 403\)/);
      expect(refused.stderr).toContain(
        "hint: the credentials' policy does not allow this request on that key: give them the cache module's policy for what this command does",
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
