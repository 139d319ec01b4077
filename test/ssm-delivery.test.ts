// The ssm delivery over a scripted SSM (aws-sdk-client-mock): what SendCommand is sent, paging
// through the invocations, each SSM status as a host outcome, the rollout stopping after a
// failed canary, HTTP checks with a rollback command, throttling and SDK faults.

import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  GetCommandInvocationCommand,
  InvalidDocument,
  InvalidInstanceId,
  ListCommandInvocationsCommand,
  type ListCommandInvocationsCommandInput,
  ListCommandsCommand,
  SendCommandCommand,
  type SendCommandCommandInput,
  SSMClient,
  ThrottlingException,
} from "@aws-sdk/client-ssm";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decryptSecret, generateAgeIdentity, parseIdentities } from "../src/age/age.js";
import type { DeliveryEvent, DeployRequest, WaveContext } from "../src/delivery/delivery.js";
import { SsmDelivery } from "../src/delivery/ssm.js";
import { runRollout } from "../src/deploy/run-rollout.js";
import { OperationError } from "../src/errors.js";
import type { FleetHost, SsmSettings, SsmTarget } from "../src/fleet/fleet.js";
import type { DeployPlan, HostPlan } from "../src/fleet/plan.js";
import type { StorePath } from "../src/nix/store-path.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { allKeys } from "../support/synthetic-cache.js";

const PATH = "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web" as StorePath;
const OLD = "/nix/store/1c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web";
const SETTINGS: SsmSettings = {
  documentName: "nixship-activate",
  region: "eu-west-1",
  commandTimeout: 600,
};
const CONTEXT: WaveContext = { index: 0, kind: "main", parallel: 2, failureBudget: 1 };

function host(name: string, instanceId: string | undefined, targets?: SsmTarget[]): FleetHost {
  return {
    name,
    tags: [],
    address: "127.0.0.1",
    delivery: "ssm",
    instanceId,
    targets,
    system: { kind: "store-path", path: PATH },
  };
}

function request(extra: Partial<DeployRequest> = {}): DeployRequest {
  return {
    path: PATH,
    action: "switch",
    substituters: ["s3://cache?region=eu-west-1"],
    trustedKeys: ["cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I="],
    commandChecks: [{ run: "curl -fsS http://127.0.0.1/health", timeout: 7 }],
    httpChecks: [],
    confirmTimeout: 0,
    activationTimeout: 600,
    ...extra,
  };
}

const activated = (generation: number) =>
  JSON.stringify({
    ok: true,
    command: "activate",
    result: "activated",
    path: PATH,
    action: "switch",
    previous: OLD,
    previousGeneration: generation - 1,
    generation,
  });

/** activate.sh's answer to `rollback`: back from generation 5 to `generation`. */
const rolledBackTo = (generation: number) =>
  JSON.stringify({
    ok: true,
    command: "rollback",
    result: "rolled-back",
    from: 5,
    generation,
    path: OLD,
  });

const healthFailed = JSON.stringify({
  ok: false,
  command: "activate",
  result: "failed",
  phase: "health",
  exitCode: 5,
  message: "health check failed: curl -fsS http://127.0.0.1/health",
  path: PATH,
  action: "switch",
  rolledBack: true,
  previous: OLD,
  previousGeneration: 4,
  generation: 4,
});

/** How an instance's invocation ends; `unlisted`: SSM never created one. */
interface Final {
  readonly status: string;
  readonly details?: string;
  readonly stdout?: string;
  readonly stderr?: string;
  readonly code?: number;
  readonly unlisted?: boolean;
}

const SUCCESS = (stdout: string): Final => ({ status: "Success", stdout: `${stdout}\n`, code: 0 });

/**
 * A scripted SSM: every command's invocations go Pending, InProgress, then end as `plan`
 * says; ListCommandInvocations answers two invocations a page.
 */
class FakeSsm {
  readonly client = new SSMClient({ region: "eu-west-1" });
  readonly mock = mockClient(this.client);
  /** Errors the next calls of a command (by name) fail with, in order. */
  private readonly faults = new Map<string, Error[]>();
  private readonly commands = new Map<
    string,
    { input: SendCommandCommandInput; instances: string[]; polls: number }
  >();

  constructor(
    private readonly plan: (instanceId: string, input: SendCommandCommandInput) => Final,
    /** The instances any Targets match. */
    private readonly matched: readonly string[] = [],
  ) {
    const throttled = (name: string) => {
      const fault = this.faults.get(name)?.shift();
      if (fault) throw fault;
    };
    this.mock.on(SendCommandCommand).callsFake((input: SendCommandCommandInput) => {
      throttled("SendCommand");
      const id = `cmd-${this.commands.size + 1}`;
      const instances = input.InstanceIds ?? [...this.matched];
      this.commands.set(id, { input, instances, polls: 0 });
      return { Command: { CommandId: id } };
    });
    this.mock
      .on(ListCommandInvocationsCommand)
      .callsFake((input: ListCommandInvocationsCommandInput) => {
        throttled("ListCommandInvocations");
        const command = this.command(input.CommandId);
        if (!input.NextToken) command.polls++;
        const all = command.instances.flatMap((id) => {
          const final = this.plan(id, command.input);
          if (command.polls < 3) {
            return [{ InstanceId: id, Status: command.polls === 1 ? "Pending" : "InProgress" }];
          }
          if (final.unlisted) return [];
          return [{ InstanceId: id, Status: final.status, StatusDetails: final.details }];
        });
        const start = Number(input.NextToken ?? 0);
        const next = start + 2 < all.length ? String(start + 2) : undefined;
        return { CommandInvocations: all.slice(start, start + 2), NextToken: next };
      });
    this.mock.on(GetCommandInvocationCommand).callsFake((input) => {
      const final = this.plan(input.InstanceId, this.command(input.CommandId).input);
      return {
        Status: final.status,
        StandardOutputContent: final.stdout ?? "",
        StandardErrorContent: final.stderr ?? "",
        ResponseCode: final.code ?? -1,
      };
    });
    this.mock.on(ListCommandsCommand).callsFake((input) => {
      const command = this.command(input.CommandId);
      const done = command.polls >= 3;
      return {
        Commands: [
          {
            CommandId: input.CommandId,
            Status: done ? "Failed" : "InProgress",
            TargetCount: command.instances.length,
          },
        ],
      };
    });
  }

  fail(name: "SendCommand" | "ListCommandInvocations", error: Error): void {
    this.faults.set(name, [...(this.faults.get(name) ?? []), error]);
  }

  private command(id: string | undefined) {
    const c = this.commands.get(id ?? "");
    if (!c) throw new Error(`no command ${id}`);
    return c;
  }

  delivery(store?: ObjectStore, storedStatus = false): SsmDelivery {
    return new SsmDelivery({
      settings: SETTINGS,
      client: this.client,
      pollInterval: 1,
      throttleDelay: 1,
      ...(store ? { store } : {}),
      storedStatus,
    });
  }

  sent(): SendCommandCommandInput[] {
    return this.mock.commandCalls(SendCommandCommand).map((c) => c.args[0].input);
  }
}

let fake: FakeSsm | undefined;
afterEach(() => fake?.mock.restore());

function makeFake(...args: ConstructorParameters<typeof FakeSsm>): FakeSsm {
  fake = new FakeSsm(...args);
  return fake;
}

async function deploy(
  f: FakeSsm,
  hosts: FleetHost[],
  req = request(),
  context: WaveContext = CONTEXT,
) {
  const events: DeliveryEvent[] = [];
  const outcomes = await f.delivery().deployWave(
    hosts.map((h) => ({ host: h, request: req })),
    (e) => events.push(e),
    context,
  );
  return { outcomes, events };
}

describe("SsmDelivery.deployWave", () => {
  it("sends one command for the wave's instances, with the rollout's rate controls", async () => {
    const f = makeFake((id) => SUCCESS(activated(id === "i-00000003" ? 7 : 5)));
    const hosts = [host("web1", "i-00000001"), host("web2", "i-00000002")];
    hosts.push(host("web3", "i-00000003"));
    const { outcomes, events } = await deploy(f, hosts);

    expect(f.sent()).toHaveLength(1);
    const sent = f.sent()[0] as SendCommandCommandInput;
    expect(sent).toMatchObject({
      DocumentName: "nixship-activate",
      InstanceIds: ["i-00000001", "i-00000002", "i-00000003"],
      MaxConcurrency: "2",
      MaxErrors: "1",
      TimeoutSeconds: 600,
      // Its last word the send's nonce, by which a send whose answer was lost is found.
      Comment: expect.stringMatching(/^nixship deploy \/nix\/store\/\S* #[0-9a-f]{16}$/),
    });
    expect(sent.Targets).toBeUndefined();
    const p = sent.Parameters ?? {};
    expect(p.Command).toEqual(["activate"]);
    expect(p.StorePath).toEqual([PATH]);
    expect(p.Action).toEqual(["switch"]);
    expect(p.Substituters).toEqual(["s3://cache?region=eu-west-1"]);
    expect(p.TrustedPublicKeys).toEqual(["cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I="]);
    expect(p.ExecutionTimeout).toEqual(["600"]);
    expect(JSON.parse(Buffer.from(p.HealthChecks?.[0] ?? "", "base64").toString())).toEqual([
      { run: "curl -fsS http://127.0.0.1/health", timeout: 7 },
    ]);

    expect(outcomes).toEqual([
      { status: "activated", generation: 5, previous: OLD },
      { status: "activated", generation: 5, previous: OLD },
      { status: "activated", generation: 7, previous: OLD },
    ]);
    // Three invocations, two a page: every poll reads two pages.
    const lists = f.mock.commandCalls(ListCommandInvocationsCommand).map((c) => c.args[0].input);
    expect(lists.filter((i) => i.NextToken === "2").length).toBeGreaterThanOrEqual(3);
    expect(lists.length).toBe(2 * lists.filter((i) => i.NextToken === "2").length);
    // Phases as SSM reports them, and one done per host.
    const web1 = events.filter((e) => "host" in e && e.host === "web1");
    expect(
      web1.filter((e) => e.type === "phase").map((e) => e.type === "phase" && e.phase),
    ).toEqual(["connect", "switch", "done"]);
    expect(events.filter((e) => e.type === "done").map((e) => e.host)).toEqual(
      expect.arrayContaining(["web1", "web2", "web3"]),
    );
    expect(events.filter((e) => e.type === "done")).toHaveLength(3);
  });

  it("sends a targets host its own command, fails it naming the instances that failed, and sends back those that switched", async () => {
    const wentBack = rolledBackTo(4);
    const f = makeFake(
      (id, input) =>
        input.Parameters?.Command?.[0] === "rollback"
          ? SUCCESS(wentBack)
          : id === "i-0000000b"
            ? { status: "Failed", details: "Failed", stdout: `${healthFailed}\n`, code: 5 }
            : SUCCESS(activated(5)),
      ["i-0000000a", "i-0000000b", "i-0000000c"],
    );
    const targets = [{ key: "tag:Role", values: ["web"] }];
    const hosts = [host("web1", "i-00000001"), host("web-tier", undefined, targets)];
    const { outcomes } = await deploy(f, hosts);

    expect(f.sent()).toHaveLength(3);
    expect(f.sent()[0]).toMatchObject({ InstanceIds: ["i-00000001"] });
    expect(f.sent()[1]).toMatchObject({ Targets: [{ Key: "tag:Role", Values: ["web"] }] });
    expect(f.sent()[1]?.InstanceIds).toBeUndefined();
    // The host is one thing: the two instances that switched are sent back with it.
    expect(f.sent()[2]).toMatchObject({
      InstanceIds: ["i-0000000a", "i-0000000c"],
      Parameters: { Command: ["rollback"], Generation: ["4"] },
    });
    expect(outcomes[0]).toMatchObject({ status: "activated" });
    expect(outcomes[1]).toMatchObject({ status: "failed", phase: "health", rolledBack: true });
    const message = outcomes[1]?.status === "failed" ? outcomes[1].message : "";
    expect(message).toMatch(
      /^1 of 3 instances failed: i-0000000b: health check failed.*; the 2 that switched went back$/,
    );
  });

  it("maps each way an invocation ends to the host's outcome", async () => {
    const finals: Record<string, Final> = {
      "i-00000001": SUCCESS(activated(5)),
      "i-00000002": { status: "Failed", details: "Failed", stdout: `${healthFailed}\n`, code: 5 },
      "i-00000003": { status: "TimedOut", details: "Execution Timed Out" },
      "i-00000004": { status: "Failed", details: "Undeliverable" },
      "i-00000005": { status: "Cancelled", details: "Terminated" },
      "i-00000006": { status: "Cancelled", details: "Cancelled" },
      "i-00000007": { status: "Failed", details: "Failed", stderr: "sh: 1: nix: not found\n" },
    };
    const f = makeFake((id) => finals[id] as Final);
    const hosts = Object.keys(finals).map((id, i) => host(`h${i + 1}`, id));
    const { outcomes } = await deploy(f, hosts, request(), { ...CONTEXT, failureBudget: 0 });

    expect(f.sent()).toHaveLength(1);
    expect(f.sent()[0]).toMatchObject({ MaxErrors: "0" });
    expect(outcomes[0]).toEqual({ status: "activated", generation: 5, previous: OLD });
    expect(outcomes[1]).toEqual({
      status: "failed",
      phase: "health",
      message: "health check failed: curl -fsS http://127.0.0.1/health",
      rolledBack: true,
    });
    expect(outcomes[2]).toEqual({
      status: "failed",
      phase: "switch",
      message: "i-00000003: SSM timed out after 600s (Execution Timed Out)",
      rolledBack: false,
    });
    expect(outcomes[3]).toMatchObject({ status: "failed", phase: "connect", rolledBack: false });
    expect(outcomes[3]).toHaveProperty(
      "message",
      expect.stringMatching(/^i-00000004: .*\(Undeliverable\)/),
    );
    for (const stopped of [outcomes[4], outcomes[5]]) {
      expect(stopped).toEqual({
        status: "failed",
        phase: "connect",
        message: expect.stringMatching(
          /: not started: SSM stopped the command after MaxErrors was reached$/,
        ),
        rolledBack: false,
      });
    }
    expect(outcomes[6]).toHaveProperty(
      "message",
      "i-00000007: SSM reported Failed (exit ?): sh: 1: nix: not found",
    );
  });

  it("counts an instance SSM never started, once the command ended, as not started", async () => {
    const f = makeFake((id) =>
      id === "i-00000001"
        ? { status: "Failed", details: "Failed", stdout: `${healthFailed}\n`, code: 5 }
        : { status: "", unlisted: true },
    );
    const { outcomes } = await deploy(f, [host("a", "i-00000001"), host("b", "i-00000002")]);
    expect(outcomes[0]).toMatchObject({ status: "failed", phase: "health" });
    expect(outcomes[1]).toMatchObject({
      status: "failed",
      message: "i-00000002: not started: SSM stopped the command after MaxErrors was reached",
    });
    expect(f.mock.commandCalls(ListCommandsCommand).length).toBeGreaterThan(0);
  });

  it("retries throttled calls", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    const throttling = () =>
      new ThrottlingException({
        message: "Rate exceeded",
        Message: "Rate exceeded",
        $metadata: {},
      });
    f.fail("SendCommand", throttling());
    f.fail("ListCommandInvocations", throttling());
    const { outcomes } = await deploy(f, [host("a", "i-00000001")]);
    expect(outcomes).toEqual([{ status: "activated", generation: 5, previous: OLD }]);
    expect(f.mock.commandCalls(SendCommandCommand)).toHaveLength(2);
    expect(f.sent()[0]).toEqual(f.sent()[1]);
  });

  it("fails the wave on a fault of the document, with a hint; a bad instance only its hosts", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    f.fail("SendCommand", new InvalidDocument({ message: "Document not found", $metadata: {} }));
    const wave = deploy(f, [host("a", "i-00000001")]);
    await expect(wave).rejects.toThrow(OperationError);
    await expect(wave).rejects.toMatchObject({
      code: "ssm-invalid-document",
      hint: expect.stringContaining(
        "aws ssm create-document --document-type Command --document-format JSON --content file://doc.json --name nixship-activate",
      ),
    });
    f.fail(
      "SendCommand",
      new InvalidInstanceId({ message: "Instances not in a valid state", $metadata: {} }),
    );
    const { outcomes } = await deploy(f, [host("a", "i-00000001")]);
    expect(outcomes[0]).toMatchObject({
      status: "failed",
      phase: "connect",
      message: expect.stringContaining("InvalidInstanceId"),
    });
  });

  it("refuses a request the document would refuse before sending anything", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    await expect(
      deploy(f, [host("a", "i-00000001")], request({ substituters: ["file:///srv/cache"] })),
    ).rejects.toThrow(/Substituters/);
    expect(f.sent()).toHaveLength(0);
  });
});

describe("secrets over SSM", () => {
  // A bundle as deploy makes it: ciphertexts only (here a stand-in, base64 that stands out).
  const CIPHERTEXT = Buffer.from("age-ciphertext-stand-in-6c1f").toString("base64");
  const bundleFor = (name: string) =>
    `nixship-secrets 1\n${name} root root 0400 /run/keys/${name} ${"a".repeat(64)} ${CIPHERTEXT}\n`;
  // The host's key, which its bundle's URL is sealed to.
  let host1: { identity: string; recipient: string };
  const withSecrets = (name: string) =>
    request({
      secrets: {
        bundle: bundleFor(name),
        digest: "d".repeat(64),
        age: undefined,
        hostKey: host1.recipient,
      },
    });
  /** The presigned URL a SecretsUrl parameter holds, opened with the host's key. */
  const unsealed = async (sealed: string) => {
    expect(sealed).toMatch(/^age:[A-Za-z0-9+/]+={0,2}$/);
    const identities = parseIdentities(host1.identity, "the host's key");
    const opened = await decryptSecret(Buffer.from(sealed.slice(4), "base64"), identities, "url");
    return Buffer.from(opened).toString("utf8");
  };
  let s3: S3Server;
  let store: ObjectStore;
  beforeAll(async () => {
    s3 = await startS3Server();
    store = await openStore(s3.url);
    host1 = await generateAgeIdentity();
  });
  afterAll(async () => {
    await store.close();
    await s3.close();
  });

  it("stores the bundle and sends a presigned URL and its digest, never the ciphertext", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    const hosts = [host("web1", "i-00000001"), host("web2", "i-00000002")];
    const events: DeliveryEvent[] = [];
    const outcomes = await f.delivery(store).deployWave(
      hosts.map((h) => ({ host: h, request: withSecrets("token") })),
      (e) => events.push(e),
      CONTEXT,
    );
    expect(outcomes.map((o) => o.status)).toEqual(["activated", "activated"]);
    // The same secrets: one command, one URL.
    expect(f.sent()).toHaveLength(1);
    const p = f.sent()[0]?.Parameters ?? {};
    const sha = createHash("sha256").update(bundleFor("token")).digest("hex");
    expect(p.SecretsSha256).toEqual([sha]);
    // Sealed to the host's key: what SSM keeps of the command fetches nothing for anyone else.
    const sealed = p.SecretsUrl?.[0] ?? "";
    expect(sealed).not.toContain("X-Amz-");
    const url = await unsealed(sealed);
    expect(url).toContain(`/secrets/web1/${sha}?`);
    expect(url).toContain("X-Amz-Signature=");
    expect(url).toMatch(/X-Amz-Expires=(\d+)/);
    expect(JSON.stringify(f.sent())).not.toContain(CIPHERTEXT);
    // The URL gets the bundle (s3rver does not check the signature; S3 does).
    const got = await fetch(url);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe(bundleFor("token"));
  });

  it("gives hosts with other secrets commands of their own", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    const wave = [
      { host: host("web1", "i-00000001"), request: withSecrets("token") },
      { host: host("db1", "i-00000002"), request: withSecrets("password") },
    ];
    await f.delivery(store).deployWave(wave, () => {}, CONTEXT);
    expect(f.sent()).toHaveLength(2);
    const urls = await Promise.all(
      f.sent().map((c) => unsealed(c.Parameters?.SecretsUrl?.[0] ?? "")),
    );
    expect(urls.map((u) => u.includes("/secrets/db1/"))).toEqual([false, true]);
  });

  it("sends 'none' for the empty bundle, which the host makes itself: nothing stored or fetched", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    const empty = "nixship-secrets 1\n";
    const wave = [
      {
        host: host("gone1", "i-00000003"),
        request: request({ secrets: { bundle: empty, digest: "e".repeat(64), age: undefined } }),
      },
    ];
    await f.delivery(store).deployWave(wave, () => {}, CONTEXT);
    expect(f.sent()[0]?.Parameters).toMatchObject({
      SecretsUrl: ["none"],
      SecretsSha256: [createHash("sha256").update(empty).digest("hex")],
    });
    expect(await allKeys(store, "secrets/gone1/")).toEqual([]);
  });

  it("refuses secrets for a host whose key is not known, before anything is sent", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    const secrets = { bundle: bundleFor("token"), digest: "d".repeat(64), age: undefined };
    const wave = [{ host: host("web1", "i-00000001"), request: request({ secrets }) }];
    await expect(f.delivery(store).deployWave(wave, () => {}, CONTEXT)).rejects.toThrow(
      /ssm host web1 gets secrets, and its host key is not known/,
    );
    expect(f.sent()).toHaveLength(0);
  });

  it("refuses secrets without a store that presigns, before anything is sent", async () => {
    const f = makeFake(() => SUCCESS(activated(5)));
    const wave = [{ host: host("web1", "i-00000001"), request: withSecrets("token") }];
    await expect(f.delivery().deployWave(wave, () => {}, CONTEXT)).rejects.toThrow(
      /presigned URL to the fleet's store, and the fleet has no cache store/,
    );
    const dir = await mkdtemp(join(tmpdir(), "nixship-ssm-fs-"));
    const fs = await openStore(`file://${dir}`);
    await expect(f.delivery(fs).deployWave(wave, () => {}, CONTEXT)).rejects.toThrow(
      /cannot presign one/,
    );
    await fs.close();
    await rm(dir, { recursive: true, force: true });
    expect(f.sent()).toHaveLength(0);
  });
});

/**
 * An HTTP server on loopback for the deployer's checks while the describe block runs: /ok
 * answers 200, anything else 500. Returns a getter of its base URL.
 */
function checkedServer(): () => string {
  let server: Server;
  let base = "";
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.statusCode = req.url === "/ok" ? 200 : 500;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return () => base;
}

describe("HTTP checks from the deployer", () => {
  const url = checkedServer();

  const rolledBack = rolledBackTo(4);
  const plan = (_id: string, input: SendCommandCommandInput) =>
    SUCCESS(input.Parameters?.Command?.[0] === "rollback" ? rolledBack : activated(5));

  it("keep a host that passes them", async () => {
    const f = makeFake(plan);
    const check = { url: `${url()}/ok`, expectStatus: 200, timeout: 2 };
    const { outcomes } = await deploy(
      f,
      [host("a", "i-00000001")],
      request({ httpChecks: [check] }),
    );
    expect(outcomes[0]).toMatchObject({ status: "activated" });
    expect(f.sent()).toHaveLength(1);
  });

  it("roll a host that fails them back with a rollback command to the generation it left", async () => {
    const f = makeFake(plan);
    const check = { url: `${url()}/health`, expectStatus: 200, timeout: 1 };
    const { outcomes, events } = await deploy(
      f,
      [host("a", "i-00000001")],
      request({ httpChecks: [check] }),
    );
    expect(outcomes[0]).toEqual({
      status: "failed",
      phase: "health",
      message: expect.stringContaining("expected status 200"),
      rolledBack: true,
    });
    expect(f.sent()).toHaveLength(2);
    expect(f.sent()[1]).toMatchObject({
      InstanceIds: ["i-00000001"],
      Parameters: { Command: ["rollback"], Generation: ["4"] },
    });
    const phases = events.flatMap((e) => (e.type === "phase" ? [e.phase] : []));
    expect(phases.slice(-2)).toEqual(["health", "rollback"]);
  });

  it("check each host of a shared command with its own checks: one that fails goes back alone", async () => {
    const f = makeFake(plan);
    // Each host's checks are its own ({address}, {name} filled in): the command carries none.
    const checks = { a: `${url()}/ok`, b: `${url()}/b/health` };
    const wave = [host("a", "i-00000001"), host("b", "i-00000002")].map((h) => ({
      host: h,
      request: request({
        httpChecks: [{ url: checks[h.name as "a" | "b"], expectStatus: 200, timeout: 1 }],
      }),
    }));
    const outcomes = await f.delivery().deployWave(wave, () => {}, CONTEXT);
    expect(f.sent()[0]).toMatchObject({ InstanceIds: ["i-00000001", "i-00000002"] });
    expect(outcomes.map((o) => [o.status, "message" in o ? o.message : ""])).toEqual([
      ["activated", ""],
      ["failed", expect.stringContaining(`${checks.b}: expected status 200`)],
    ]);
    expect(f.sent()).toHaveLength(2);
    expect(f.sent()[1]).toMatchObject({
      InstanceIds: ["i-00000002"],
      Parameters: { Command: ["rollback"] },
    });
  });
});

describe("reboots over SSM (deploy --reboot)", () => {
  const url = checkedServer();

  // What the invocation reports once SSM's agent rebooted the instance (exit 194) and ran the
  // document again: the after-boot verdict.
  const booted = JSON.stringify({
    ok: true,
    command: "after-boot",
    result: "booted",
    assessment: "indeterminate",
    booted: PATH,
    bootId: "b2",
    generation: 5,
  });
  const settled = (verb: string) =>
    JSON.stringify({
      ok: verb === "confirm-boot",
      command: verb,
      result: verb === "confirm-boot" ? "confirmed" : "rolled-back",
      ...(verb === "abort-boot"
        ? { phase: "confirm", exitCode: 6, message: "aborted by the deployer", rolledBack: true }
        : {}),
      ...(verb === "abort-boot" ? { rebooting: true } : {}),
      booted: PATH,
      bootId: "b2",
      generation: verb === "confirm-boot" ? 5 : 4,
    });
  const plan = (_id: string, input: SendCommandCommandInput) => {
    const command = input.Parameters?.Command?.[0] ?? "activate";
    if (command === "activate") return SUCCESS(booted);
    return command === "abort-boot"
      ? { status: "Failed", stdout: `${settled(command)}\n`, code: 0 }
      : SUCCESS(settled(command));
  };
  const rebooting = (httpChecks: DeployRequest["httpChecks"]) =>
    request({ httpChecks, reboot: { timeout: 300, rollback: true } });

  it("sends a boot activation with a RebootToken, checks the host, and confirms the boot", async () => {
    const f = makeFake(plan);
    const check = { url: `${url()}/ok`, expectStatus: 200, timeout: 2 };
    const { outcomes } = await deploy(f, [host("a", "i-00000001")], rebooting([check]));
    expect(outcomes[0]).toMatchObject({ status: "activated", generation: 5 });
    const [first, second] = f.sent();
    expect(first?.Parameters).toMatchObject({
      Command: ["activate"],
      Action: ["boot"],
      RebootRollback: ["true"],
      RebootToken: [expect.stringMatching(/^s[a-z0-9]+$/)],
    });
    expect(second).toMatchObject({
      InstanceIds: ["i-00000001"],
      Parameters: { Command: ["confirm-boot"], RebootToken: first?.Parameters?.RebootToken },
    });
    expect(f.sent()).toHaveLength(2);
  });

  it("sends abort-boot when an HTTP check fails after the boot", async () => {
    const f = makeFake(plan);
    const check = { url: `${url()}/health`, expectStatus: 200, timeout: 1 };
    const { outcomes } = await deploy(f, [host("a", "i-00000001")], rebooting([check]));
    expect(outcomes[0]).toEqual({
      status: "failed",
      phase: "health",
      message: expect.stringMatching(
        /expected status 200.*back on the previous generation; it reboots into its previous system/,
      ),
      rolledBack: true,
    });
    expect(f.sent()[1]?.Parameters).toMatchObject({
      Command: ["abort-boot"],
      RebootRollback: ["true"],
    });
  });

  it("reports an instance that came back on another system as failed in the reboot", async () => {
    const fellBack = JSON.stringify({
      ok: false,
      command: "after-boot",
      result: "rolled-back",
      phase: "reboot",
      exitCode: 4,
      message: `the host came back on ${OLD} instead of ${PATH}: that system did not boot (the boot loader fell back)`,
      rolledBack: true,
      rebooting: false,
      booted: OLD,
      bootId: "b2",
      generation: 4,
    });
    const f = makeFake(() => ({ status: "Failed", stdout: `${fellBack}\n`, code: 4 }));
    const { outcomes } = await deploy(f, [host("a", "i-00000001")], rebooting([]));
    // It runs what it came back on, whatever the survey found.
    expect(outcomes[0]).toMatchObject({
      status: "failed",
      phase: "reboot",
      rolledBack: true,
      runs: OLD,
    });
    expect(f.sent()).toHaveLength(1);
  });
});

describe("pruning after a confirmed activation (keepGenerations)", () => {
  const pruned = JSON.stringify({
    ok: true,
    command: "prune",
    result: "pruned",
    kept: [4, 5],
    removed: [1, 2, 3],
    gc: "done",
    deletedPaths: 12,
    freedMiB: 3.5,
    generation: 5,
  });
  const cannot = JSON.stringify({
    ok: false,
    command: "prune",
    result: "failed",
    exitCode: 12,
    message: "cannot remove generations 1 2 3 of /nix/var/nix/profiles/system",
  });
  const plan =
    (prune: Final) =>
    (_id: string, input: SendCommandCommandInput): Final =>
      input.Parameters?.Command?.[0] === "prune" ? prune : SUCCESS(activated(5));

  it("sends Command=prune with KeepGenerations to the instances that activated, and reports it", async () => {
    const f = makeFake(plan(SUCCESS(pruned)));
    const { outcomes, events } = await deploy(
      f,
      [host("a", "i-00000001")],
      request({ keepGenerations: 2 }),
    );
    expect(f.sent()).toHaveLength(2);
    expect(f.sent()[1]).toMatchObject({
      InstanceIds: ["i-00000001"],
      Parameters: { Command: ["prune"], KeepGenerations: ["2"] },
    });
    expect(outcomes[0]).toEqual({
      status: "activated",
      generation: 5,
      previous: OLD,
      pruned: {
        ok: true,
        kept: [4, 5],
        removed: [1, 2, 3],
        gc: "done",
        deletedPaths: 12,
        freedMiB: 3.5,
      },
    });
    const logs = events.flatMap((e) => (e.type === "log" ? [e.line] : []));
    expect(logs).toContain(
      "removed generations 1, 2, 3; kept 4, 5; garbage collected: 12 paths, 3.5 MiB freed",
    );
  });

  it("keeps the host activated when pruning fails, and says why", async () => {
    const f = makeFake(plan({ status: "Failed", stdout: `${cannot}\n`, code: 12 }));
    const { outcomes } = await deploy(
      f,
      [host("a", "i-00000001")],
      request({ keepGenerations: 2 }),
    );
    expect(outcomes[0]).toMatchObject({
      status: "activated",
      pruned: { ok: false, message: expect.stringContaining("cannot remove generations") },
    });
  });

  it("sends no prune without keepGenerations, nor after a failed activation", async () => {
    const f = makeFake(plan(SUCCESS(pruned)));
    await deploy(f, [host("a", "i-00000001")]);
    expect(f.sent().map((c) => c.Parameters?.Command?.[0])).toEqual(["activate"]);
    const g = makeFake(() => ({ status: "Failed", stdout: `${healthFailed}\n`, code: 5 }));
    const { outcomes } = await deploy(
      g,
      [host("a", "i-00000001")],
      request({ keepGenerations: 2 }),
    );
    expect(outcomes[0]).toMatchObject({ status: "failed", phase: "health" });
    expect(g.sent().map((c) => c.Parameters?.Command?.[0])).toEqual(["activate"]);
  });
});

describe("SsmDelivery under the rollout engine", () => {
  it("stops after a failed canary: the next wave's command is never sent", async () => {
    const f = makeFake(() => ({
      status: "Failed",
      details: "Failed",
      stdout: `${healthFailed}\n`,
      code: 5,
    }));
    const hosts = [host("a", "i-00000001"), host("b", "i-00000002"), host("c", "i-00000003")];
    const planOf = (name: string): HostPlan => ({
      host: name,
      action: "activate",
      current: undefined,
      generation: undefined,
      desired: PATH,
      transfer: { paths: 0, bytes: 0 },
      transferBasis: "whole-closure",
      error: undefined,
    });
    const plan: DeployPlan = {
      action: "switch",
      hosts: hosts.map((h) => planOf(h.name)),
      counts: { activate: 3, skip: 0, unreachable: 0 },
      changes: 3,
      totals: { paths: 0, bytes: 0 },
      distinct: { paths: 0, bytes: 0 },
      // One canary, then waves of two (what a policy of canary 1, parallel 2 plans).
      waves: [
        { wave: 1, kind: "canary", hosts: [hosts[0]?.name as string] },
        { wave: 2, kind: "main", hosts: hosts.slice(1).map((h) => h.name) },
      ],
    };
    const results = await runRollout({
      plan,
      hosts,
      policy: { maxFailures: 0 },
      delivery: f.delivery(),
      requests: { get: () => request() },
      emit: () => {},
    });
    expect(f.sent()).toHaveLength(1);
    expect(f.sent()[0]).toMatchObject({ InstanceIds: ["i-00000001"], MaxErrors: "0" });
    expect(results.map((r) => [r.host, r.outcome.status])).toEqual([
      ["a", "failed"],
      ["b", "skipped"],
      ["c", "skipped"],
    ]);
  });
});

describe("SsmDelivery.status and rollback", () => {
  const status = JSON.stringify({
    ok: true,
    command: "status",
    current: PATH,
    booted: OLD,
    profile: PATH,
    generation: 5,
    generations: [
      { generation: 4, path: OLD },
      { generation: 5, path: PATH },
    ],
    pending: null,
  });

  it("asks an instance with Command=status", async () => {
    const f = makeFake(() => SUCCESS(status));
    const s = await f.delivery().status(host("a", "i-00000001"));
    expect(s).toEqual({
      reachable: true,
      current: PATH,
      booted: OLD,
      profile: PATH,
      generation: 5,
      generations: [
        { generation: 4, path: OLD },
        { generation: 5, path: PATH },
      ],
      pending: undefined,
    });
    expect(f.sent()[0]).toMatchObject({
      InstanceIds: ["i-00000001"],
      Parameters: { Command: ["status"] },
    });
  });

  it("cannot ask a tag target, and says why", async () => {
    const f = makeFake(() => SUCCESS(status));
    const s = await f
      .delivery()
      .status(host("t", undefined, [{ key: "tag:Role", values: ["web"] }]));
    expect(s).toEqual({
      reachable: false,
      error: expect.stringMatching(
        /^status of a tag target: t stands for every instance .*tag:Role=web/,
      ),
    });
    expect(f.sent()).toHaveLength(0);
  });

  it("reports an undeliverable instance as unreachable", async () => {
    const f = makeFake(() => ({ status: "Failed", details: "Undeliverable" }));
    const s = await f.delivery().status(host("a", "i-00000001"));
    expect(s).toMatchObject({ reachable: false, error: expect.stringMatching(/Undeliverable/) });
  });

  it("throws a fault of the account with its code and hint", async () => {
    const f = makeFake(() => SUCCESS(status));
    const denied = Object.assign(new Error("User is not authorized to perform ssm:SendCommand"), {
      name: "AccessDeniedException",
    });
    f.fail("SendCommand", denied);
    await expect(f.delivery().status(host("a", "i-00000001"))).rejects.toMatchObject({
      code: "ssm-access-denied",
      hint: expect.stringContaining("ssm:SendCommand"),
    });
    const noCredentials = Object.assign(
      new Error("Could not load credentials from any providers"),
      {
        name: "CredentialsProviderError",
      },
    );
    f.fail("SendCommand", noCredentials);
    await expect(f.delivery().status(host("a", "i-00000001"))).rejects.toMatchObject({
      code: "ssm-no-credentials",
      hint: expect.stringContaining("AWS_PROFILE"),
    });
  });

  it("for a plan, shows a host it may not ask from its status record, saying so", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-ssm-stored-"));
    const store = await openStore(`file://${dir}`);
    try {
      await writeStatus(store, {
        version: 1,
        host: "a",
        mode: "ssm",
        channel: null,
        seq: null,
        desired: PATH,
        current: PATH,
        generation: 4,
        state: "success",
        phase: null,
        error: null,
        rolledBack: null,
        startedAt: "2026-11-20T10:00:00.000Z",
        updatedAt: "2026-11-20T10:01:00.000Z",
      });
      const f = makeFake(() => SUCCESS(status));
      const denied = () =>
        Object.assign(new Error("User is not authorized to perform ssm:SendCommand"), {
          name: "AccessDeniedException",
        });
      f.fail("SendCommand", denied());
      f.fail("SendCommand", denied());
      expect(await f.delivery(store, true).status(host("a", "i-00000001"))).toMatchObject({
        reachable: true,
        current: PATH,
        generation: 4,
        stored: {
          at: "2026-11-20T10:01:00.000Z",
          why: expect.stringContaining("not authorized to perform ssm:SendCommand"),
        },
      });
      // A host with no record stays unreachable, and says both why.
      expect(await f.delivery(store, true).status(host("b", "i-00000002"))).toMatchObject({
        reachable: false,
        error: expect.stringMatching(
          /ssm:SendCommand.*; and it has no status record in the store$/,
        ),
      });
      // One that answers is asked, not read.
      const live = await f.delivery(store, true).status(host("a", "i-00000001"));
      expect(live).toMatchObject({ reachable: true });
      expect(live).not.toHaveProperty("stored");
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("rolls an instance back to a given generation", async () => {
    const back = rolledBackTo(3);
    const f = makeFake(() => SUCCESS(back));
    const [r] = await f
      .delivery()
      .rollbackHosts([host("a", "i-00000001")], { kind: "generation", generation: 3 });
    expect(r).toEqual({ status: "rolled-back", generation: 3, path: OLD });
    expect(f.sent()[0]).toMatchObject({
      Parameters: { Command: ["rollback"], Generation: ["3"] },
    });
  });
});
