// moto's server for tests and benchmarks: the app `moto_server` serves, on 127.0.0.1 at a port
// the OS picks, in memory; as an S3 server with one pre-created bucket and nothing of ours in
// front of it, or bare (every service moto emulates, the SSM stand-in's SSM and EC2 among them).
// With `iam`, moto enforces the IAM policies of the users and roles it holds on every request.
import { type ChildProcess, spawn } from "node:child_process";
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { type AwsKeys, awsQuery, queryValue } from "./aws-query.js";
import { type S3Bucket, S3RVER_CREDENTIALS } from "./s3-server.js";

/** Where scripts/setup.sh installs moto when the machine's python3 lacks it. */
export const MOTO_VENV = process.env.NIXSHIP_MOTO_VENV ?? "/var/lib/nixship/moto";

export interface MotoServer extends S3Bucket {
  readonly server: "moto";
  /** The server's process (python3), to measure its CPU. */
  readonly pid: number;
  /**
   * With `iam`: the keys of an IAM user whose policy allows everything (as whoever runs
   * Terraform), to create the users, roles and policies under test. Without: undefined (any
   * keys do).
   */
  readonly admin: AwsKeys | undefined;
}

/** moto's server, bare: its endpoint answers every service moto emulates. */
export interface MotoProcess {
  readonly endpoint: string;
  /** The server's process (python3), to measure its CPU. */
  readonly pid: number;
  /** Stops it: its process exits and its port refuses. */
  readonly close: () => Promise<void>;
}

export interface MotoServerOptions {
  /**
   * Serve requests on many threads, as `moto_server` does (default false: one at a time).
   * moto checks a write's condition and then writes, with no lock between: on many threads two
   * writers racing on one key can both win, which S3 never lets happen. One thread makes each
   * request whole before the next starts, as S3's conditional writes are; the tests need that.
   */
  readonly threaded?: boolean;
  /** The address to listen on (default 127.0.0.1). */
  readonly address?: string;
  /**
   * Enforce IAM (default false: any keys do anything). The bucket and the admin user are made
   * before enforcement starts; every later request needs the keys of a user or assumed role
   * that moto holds, and moto's verdict on its policies (see docs/development.md for what moto
   * enforces and what it does not).
   */
  readonly iam?: boolean;
}

/** The name of the user whose keys are `admin`. */
export const MOTO_ADMIN_USER = "nixship-test-admin";
/**
 * The requests made before moto enforces IAM: CreateBucket, then CreateUser, PutUserPolicy and
 * CreateAccessKey of the admin. moto counts requests until INITIAL_NO_AUTH_ACTION_COUNT, then
 * checks every one; withBucket() proves that the count was spent exactly.
 */
const REQUESTS_BEFORE_ENFORCEMENT = 4;

const START_MS = 30_000;
const STOP_MS = 10_000;

/**
 * Serves moto's app (what `moto_server` runs) with werkzeug, on the port the OS gives, and says
 * which on stdout. Request logging is off (a line per request on a pipe nobody reads would fill
 * it). When stdin closes (the test process ended, however it ended) the server exits.
 *
 * With IAM enforced, moto checks each request's signature against the URL werkzeug rebuilt, in
 * which a query value's "%2F" is decoded to "/" (a listing of "status/" then fails with
 * SignatureDoesNotMatch, whoever signed it). The launcher puts the query back in the encoding
 * SigV4 signs (RFC 3986, "/" encoded) before moto checks; the policies are moto's to judge.
 */
const LAUNCHER = `
import logging, os, sys, threading
from urllib.parse import quote, unquote
from werkzeug.serving import make_server
from moto.server import DomainDispatcherApplication, create_backend_app
logging.getLogger("werkzeug").setLevel(logging.ERROR)
if sys.argv[3] == "iam":
    from moto.iam import access_control
    moto_request = access_control.IAMRequestBase._create_aws_request
    def signed_request(self):
        request = moto_request(self)
        path, _, query = request.url.partition("?")
        if query:
            encode = lambda text: quote(unquote(text), safe="-_.~")
            pairs = [pair.partition("=") for pair in query.split("&")]
            request.url = path + "?" + "&".join(encode(k) + "=" + encode(v) for k, _, v in pairs)
        return request
    access_control.IAMRequestBase._create_aws_request = signed_request
server = make_server(sys.argv[1], 0, DomainDispatcherApplication(create_backend_app), threaded=sys.argv[2] == "threaded")
def watch():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
print("listening", server.port, flush=True)
server.serve_forever()
`;

/** The Pythons tried, in order: one named by the environment, the machine's, setup.sh's. */
function pythons(): string[] {
  const named = process.env.NIXSHIP_MOTO_PYTHON;
  return named ? [named] : ["python3", `${MOTO_VENV}/bin/python3`];
}

export async function startMotoServer(
  bucket = "nixship-test",
  options: MotoServerOptions = {},
): Promise<MotoServer> {
  // moto without IAM takes any credentials; s3rver's let one process talk to both servers.
  // With IAM no credentials are good until the test makes them: the environment's are left.
  if (options.iam !== true) {
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  }
  process.env.AWS_REGION ??= "us-east-1";
  // As S3Store does: the SDK's warning that its future releases need Node 22 is not ours to act on.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  return withBucket(await startMoto(options), bucket, options.iam === true);
}

/** moto's server with nothing created in it, and this process's environment left as it is. */
export async function startMoto(options: MotoServerOptions = {}): Promise<MotoProcess> {
  const address = options.address ?? "127.0.0.1";
  const tried: string[] = [];
  const iam = options.iam === true;
  for (const python of pythons()) {
    const started = await launch(python, address, options.threaded === true, iam);
    if ("child" in started) {
      const { child } = started;
      return {
        endpoint: `http://${address}:${started.port}`,
        pid: child.pid ?? -1,
        close: () => stop(child),
      };
    }
    tried.push(`${python}: ${started.failure}`);
  }
  throw new Error(
    `moto's server could not be started (${tried.join("; ")}). The S3 and SSM tests run against it: run 'bash scripts/setup.sh', which installs it (pip install 'moto[server]' into ${MOTO_VENV}), or install it into python3 yourself`,
  );
}

type Launched = { child: ChildProcess; port: number } | { failure: string };

function launch(
  python: string,
  address: string,
  threaded: boolean,
  iam: boolean,
): Promise<Launched> {
  return new Promise((resolve) => {
    const args = [address, threaded ? "threaded" : "one", iam ? "iam" : "open"];
    const child = spawn(python, ["-c", LAUNCHER, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: {
        ...process.env,
        // moto's built-in AMIs (thousands) cost seconds on the first EC2 call; no test uses them.
        MOTO_EC2_LOAD_DEFAULT_AMIS: "false",
        // moto reads it once, at import: "inf" never enforces, whatever the caller's environment.
        INITIAL_NO_AUTH_ACTION_COUNT: iam ? String(REQUESTS_BEFORE_ENFORCEMENT) : "inf",
      },
    });
    // The last of stderr, to say why it failed; kept draining so that moto never blocks on it.
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    let stdout = "";
    const fail = (failure: string) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      resolve({ failure });
    };
    const timer = setTimeout(
      () => fail(`no port within ${START_MS / 1000} s; stderr: ${stderr.trim()}`),
      START_MS,
    );
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      const port = /^listening (\d+)$/m.exec(stdout)?.[1];
      if (port === undefined) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      resolve({ child, port: Number(port) });
    });
    child.once("error", (err) => fail(err.message));
    child.once("exit", (code, signal) => {
      const missing = /No module named '([^']+)'/.exec(stderr)?.[1];
      fail(
        missing
          ? `no module named '${missing}'`
          : `exited with ${code ?? signal}; stderr: ${stderr.trim()}`,
      );
    });
  });
}

async function withBucket(moto: MotoProcess, bucket: string, iam: boolean): Promise<MotoServer> {
  const { endpoint, close } = moto;
  // The SDK retries a refused connection, so this also waits until the server answers.
  const client = new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
  let admin: AwsKeys | undefined;
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }), {
      abortSignal: AbortSignal.timeout(START_MS),
    });
    if (iam) admin = await makeAdmin(endpoint, client);
  } catch (err) {
    await close();
    const what = iam ? `bucket ${bucket} and the admin user` : `bucket ${bucket}`;
    throw new Error(`moto's server at ${endpoint} did not make ${what}: ${err}`);
  } finally {
    client.destroy();
  }
  return {
    server: "moto",
    pid: moto.pid,
    admin,
    endpoint,
    bucket,
    url: `s3://${bucket}?region=us-east-1&endpoint=${encodeURIComponent(endpoint)}`,
    close,
  };
}

/**
 * The admin user and its keys, in the last requests moto lets pass; then proves that moto
 * enforces IAM: keys it does not hold are refused (a request refused is not counted).
 */
async function makeAdmin(endpoint: string, client: S3Client): Promise<AwsKeys> {
  const iam = { endpoint, service: "iam", keys: S3RVER_CREDENTIALS };
  await awsQuery(iam, "CreateUser", { UserName: MOTO_ADMIN_USER });
  await awsQuery(iam, "PutUserPolicy", {
    UserName: MOTO_ADMIN_USER,
    PolicyName: "everything",
    PolicyDocument: JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "*", Resource: "*" }],
    }),
  });
  const created = await awsQuery(iam, "CreateAccessKey", { UserName: MOTO_ADMIN_USER });
  const unknownKeys = await client.send(new ListObjectsV2Command({ Bucket: "x-enforced" })).then(
    () => "answered",
    (err: { name?: string }) => err.name ?? String(err),
  );
  if (unknownKeys !== "InvalidAccessKeyId") {
    throw new Error(
      `moto does not enforce IAM after ${REQUESTS_BEFORE_ENFORCEMENT} requests: keys it does not hold got ${unknownKeys}`,
    );
  }
  return {
    accessKeyId: queryValue(created, "AccessKeyId"),
    secretAccessKey: queryValue(created, "SecretAccessKey"),
  };
}

/** Closes its stdin (it exits), then SIGTERM, then SIGKILL, each with a bounded wait. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const within = (ms: number) =>
    Promise.race([
      exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref()),
    ]);
  child.stdin?.end();
  if (await within(STOP_MS / 2)) return;
  child.kill("SIGTERM");
  if (await within(STOP_MS / 2)) return;
  child.kill("SIGKILL");
  await exited;
}
