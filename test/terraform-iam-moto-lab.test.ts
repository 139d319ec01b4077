// The Terraform modules' IAM policies at work, with an IAM that is not ours deciding: moto's server
// with IAM on (moto-server.ts, `iam`) on the lab's bridge holds the fleet's bucket and the users
// and role that the modules grant, each with the policy rendered from the module's HCL
// (cache-policies.ts): the deployer (the cache module's writer policy), one agent per host (its
// agent policy, the user tagged nixship-host as the host module tags each host's role), and CI's
// deploy role from the github-oidc module (its trust policy; the writer policy attached). Real
// pull agents on a lab, given only their user's keys (~/.aws/credentials inside each host), apply
// what `nixship deploy --via agent` publishes with the deployer's keys, then with the keys of the
// role's web-identity session; with the agent's keys, moto refuses another host's status, other
// hosts' secrets and any write to the releases and channels.
//
// Not here: the role's ssm-document sender policy (moto authorizes every SSM action against the
// resource "*", so a grant on the document's ARN is refused whatever it says), and the trust
// policy's verdict (moto checks neither the web-identity token nor the trust policy of
// AssumeRoleWithWebIdentity: terraform-github-oidc.test.ts evaluates it).
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGateway } from "../src/lab/layout.js";
import type { Release } from "../src/release/release.js";
import { readChannel } from "../src/release/release-store.js";
import { loadRelease } from "../src/release/shard-store.js";
import type { StatusRecord } from "../src/status/status.js";
import { hostStatusKey, progressKey } from "../src/status/status.js";
import { readStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import type { AwsKeys } from "../support/aws-query.js";
import { type CliRun, nixship } from "../support/cli.js";
import { type MotoServer, startMotoServer } from "../support/moto-server.js";
import {
  type AgentLab,
  agentConfigFile,
  agentLog,
  CHANNEL,
  deployViaAgentArgs,
  labAgents,
  served,
  setSystems,
  startAgentLab,
} from "./support/agent-lab.js";
import { type RenderedCache, renderCache } from "./support/cache-policies.js";
import { buildExampleSystems } from "./support/example-systems.js";
import {
  assumeRoleWithWebIdentity,
  createMotoRole,
  createMotoUser,
  s3ClientWith,
  withKeys,
} from "./support/moto-iam.js";
import { loadModule } from "./support/terraform.js";
import { moduleResolver, renderPolicyDocument } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULES = join(ROOT, "terraform/modules");
const LAB = "iam";
const HOSTS = ["iam1", "iam2"] as const;
const REPOSITORY = "example-org/fleet";
/** moto's account. */
const ACCOUNT = "123456789012";

let lab: AgentLab;
let moto: MotoServer;
let cache: RenderedCache;
let deployer: AwsKeys;
const agentKeys = {} as Record<(typeof HOSTS)[number], AwsKeys>;
let deployRoleArn: string;

async function deploy(keys: AwsKeys): Promise<CliRun> {
  return nixship(deployViaAgentArgs(lab), { env: withKeys(keys) });
}

/** Writes the host's ~/.aws/credentials (inside the host), as an instance would have its role's. */
async function giveCredentials(host: string, keys: AwsKeys): Promise<void> {
  const file = `[default]\naws_access_key_id = ${keys.accessKeyId}\naws_secret_access_key = ${keys.secretAccessKey}\n`;
  const r = await nixship(
    [
      ...["lab", "exec", "--name", LAB, host, "--"],
      ...["sh", "-c", "umask 077 && mkdir -p /root/.aws && cat > /root/.aws/credentials"],
    ],
    { env: lab.env, input: Buffer.from(file) },
  );
  expect(r.code, r.stderr).toBe(0);
}

/** The error moto answers `command` sent with `s3`'s keys, or "allowed". */
async function answer(s3: S3Client, command: unknown): Promise<string> {
  try {
    await s3.send(command as GetObjectCommand);
    return "allowed";
  } catch (err) {
    return (err as { name?: string }).name ?? String(err);
  }
}

beforeAll(async () => {
  for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]) {
    delete process.env[name];
  }
  const [started] = await Promise.all([
    startAgentLab(LAB, { hosts: HOSTS.length }),
    buildExampleSystems(),
  ]);
  lab = started;
  const { number } = JSON.parse(await readFile(join(lab.dir, "lab.json"), "utf8")) as {
    number: number;
  };
  moto = await startMotoServer("nixship-iam-lab", { iam: true, address: labGateway(number) });
  cache = await renderCache(
    await loadModule(join(MODULES, "cache"), ROOT),
    "",
    { bucket_name: moto.bucket },
    moto.bucket,
  );
  const iam = { endpoint: moto.endpoint, service: "iam", keys: moto.admin as AwsKeys };
  deployer = await createMotoUser(iam, {
    name: "deployer",
    policies: { [cache.policyNames.writer]: cache.policies.writer },
  });
  for (const host of HOSTS) {
    agentKeys[host] = await createMotoUser(iam, {
      name: `agent-${host}`,
      tags: { "nixship-host": host },
      policies: { [cache.policyNames.agent]: cache.policies.agent },
    });
  }

  // CI's deploy role, as the github-oidc module makes it.
  const oidc = await loadModule(join(MODULES, "github-oidc"), ROOT);
  const provider = `arn:aws:iam::${ACCOUNT}:oidc-provider/token.actions.githubusercontent.com`;
  const trust = await renderPolicyDocument(
    oidc,
    "deploy_trust",
    moduleResolver(oidc, {
      vars: { repository: REPOSITORY, cache_writer_policy_arn: "" },
      known: { "aws_iam_openid_connect_provider.github": [{ arn: provider }] },
    }),
  );
  deployRoleArn = await createMotoRole(iam, {
    name: "nixship-github-actions",
    trust,
    policies: { [cache.policyNames.writer]: cache.policies.writer },
  });

  // The fleet's store is the bucket: the deployer makes its cache, and the agents follow it there
  // with their own keys only. This process (and `lab agents start`, reading their heartbeats
  // there) holds the deployer's.
  process.env.AWS_ACCESS_KEY_ID = deployer.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = deployer.secretAccessKey;
  const init = await nixship(["cache", "init", moto.url], { env: withKeys(deployer) });
  expect(init.code, init.stderr).toBe(0);
  const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
  fleet.cache.url = moto.url;
  await writeFile(lab.fleetFile, JSON.stringify(fleet, null, 2));
  await labAgents(lab, "stop");
  for (const host of HOSTS) {
    await giveCredentials(host, agentKeys[host]);
    const file = agentConfigFile(lab, host);
    const config = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...config, store: moto.url }, null, 2));
  }
  await labAgents(lab, "start");
}, 300_000);

afterAll(async () => {
  await lab?.down();
  await moto?.close();
});

/** Reads the bucket with the deployer's keys (the SDK's default chain: the environment's). */
async function asDeployer<T>(use: (store: ObjectStore) => Promise<T>): Promise<T> {
  const store = await openStore(moto.url);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

/** The host's status record once its seq is `seq` or later, or the last one read after 60 s. */
async function recordReaching(host: string, seq: number): Promise<StatusRecord | undefined> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const record = await asDeployer((store) => readStatus(store, host));
    if ((record !== undefined && record.seq !== null && record.seq >= seq) || Date.now() > deadline)
      return record;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The release the channel points at. */
function channelRelease(): Promise<Release> {
  return asDeployer(async (store) => {
    const got = await readChannel(store, CHANNEL);
    if (got.status !== "found") throw new Error("no channel in the bucket");
    return (await loadRelease(store, got.bytes, "channel")).release;
  });
}

async function agentLogs(): Promise<string> {
  const logs = await Promise.all(HOSTS.map(async (h) => `${h}:\n${await agentLog(lab, h)}`));
  return logs.join("\n").slice(-8000);
}

describe("the Terraform modules' policies, enforced by moto's IAM on a lab of real agents", () => {
  it("An agent with the Terraform policy's credentials applies a release from moto's S3 with IAM enforced, and is refused another host's status key", async () => {
    await setSystems(lab, "web-v1");
    const r = await deploy(deployer);
    expect(r.code, `${r.stderr}\n${await agentLogs()}`).toBe(0);
    expect(await Promise.all(HOSTS.map((h) => served(lab, h)))).toEqual(["web-v1", "web-v1"]);
    const release = await channelRelease();
    const seq = release.seq;
    for (const host of HOSTS) {
      // Each agent wrote its record and its marker with its own keys: the deployer may write
      // neither an agent's markers nor (below) anything as that agent.
      // The canary ran release 1; it records the last release (which keeps its entry) at its
      // next poll, which may come after the deploy returns: waited for, within a minute.
      const record = await recordReaching(host, seq);
      expect(record, host).toMatchObject({ host, state: "success", channel: CHANNEL, seq });
      expect(record?.current).toBe(release.hosts[host]?.path);
      const marker = progressKey(CHANNEL, seq, host, "success");
      expect(await asDeployer((store) => store.head(marker)), marker).toBeDefined();
    }

    const s3 = s3ClientWith(moto.endpoint, agentKeys.iam1);
    const other = "iam2";
    try {
      // Another host's status: neither written nor read.
      expect(await answer(s3, put(hostStatusKey(other)))).toBe("AccessDenied");
      expect(await answer(s3, get(hostStatusKey(other)))).toBe("AccessDenied");
      expect(await answer(s3, put(progressKey(CHANNEL, seq, other, "success")))).toBe(
        "AccessDenied",
      );
      expect(await answer(s3, get(`secrets/${other}/${"a".repeat(64)}`))).toBe("AccessDenied");
      // The releases and channels, which only the release key's holder publishes: read only.
      const releaseKey = `releases/${CHANNEL}/${seq}.json`;
      expect(await answer(s3, get(releaseKey))).toBe("allowed");
      expect(await answer(s3, put(releaseKey))).toBe("AccessDenied");
      expect(await answer(s3, del(releaseKey))).toBe("AccessDenied");
      expect(await answer(s3, put(`releases/${CHANNEL}/${seq + 1}.json`))).toBe("AccessDenied");
      expect(await answer(s3, put(`channels/${CHANNEL}.json`))).toBe("AccessDenied");
      // Nor the cache: hosts substitute from it, only the deployer writes it.
      expect(await answer(s3, put("nix-cache-info"))).toBe("AccessDenied");
    } finally {
      s3.destroy();
    }
  });

  it("CI's deploy role (github-oidc), through a web-identity session, pushes and publishes the next release", async () => {
    const session = await assumeRoleWithWebIdentity(
      { endpoint: moto.endpoint, service: "sts", keys: moto.admin as AwsKeys },
      deployRoleArn,
      "a-github-actions-oidc-token",
    );
    expect(session.sessionToken).toBeTruthy();
    await setSystems(lab, "web-v2");
    const r = await deploy(session);
    expect(r.code, `${r.stderr}\n${await agentLogs()}`).toBe(0);
    expect(await Promise.all(HOSTS.map((h) => served(lab, h)))).toEqual(["web-v2", "web-v2"]);
    // The session holds the writer policy and no more: an agent's marker is not the deployer's.
    const s3 = s3ClientWith(moto.endpoint, session);
    try {
      expect(await answer(s3, get(hostStatusKey("iam1")))).toBe("allowed");
      expect(await answer(s3, put(progressKey(CHANNEL, 99, "iam1", "success")))).toBe(
        "AccessDenied",
      );
      expect(await answer(s3, del("nix-cache-info"))).toBe("AccessDenied");
    } finally {
      s3.destroy();
    }
  });
});

const put = (key: string) => new PutObjectCommand({ Bucket: moto.bucket, Key: key, Body: "{}" });
const get = (key: string) => new GetObjectCommand({ Bucket: moto.bucket, Key: key });
const del = (key: string) => new DeleteObjectCommand({ Bucket: moto.bucket, Key: key });
