// The pull agent's configuration file (`/etc/nixship/agent.json`): parse and validate it,
// filling in defaults. Every problem names its JSON path; all problems are reported at once.
import { posix } from "node:path";
import { InputError } from "../errors.js";
import { NAME_MAX_LENGTH, NAME_PATTERN } from "../fleet/fleet.js";
import {
  got,
  inputProblem,
  type KeyShape,
  Problems,
  readArray,
  readInteger,
  readObject,
  readString,
} from "../fleet/json-check.js";
import { formatJsonPath, type JsonPath } from "../fleet/json-path.js";
import { parseJsonText } from "../fleet/json-text.js";
import { DEFAULT_ACTIVATION_TIMEOUT } from "../host/activation.js";
import { parsePublicKey } from "../nix/keys.js";
import { DEFAULT_HEARTBEAT_EVERY } from "../status/heartbeat.js";
import { parseStoreUrl } from "../store/url.js";

export const DEFAULT_AGENT_CONFIG = "/etc/nixship/agent.json";

export interface AgentConfig {
  /** The store URL holding releases, channels, status and the binary cache, as written. */
  readonly store: string;
  readonly channel: string;
  /** The host's name in releases; undefined: the agent uses os.hostname() when it runs. */
  readonly host: string | undefined;
  /** `name:base64` keys whose signed releases the agent trusts. */
  readonly releaseKeys: readonly string[];
  /** `name:base64` keys the host's Nix trusts for substitutes (require-sigs). */
  readonly cacheKeys: readonly string[];
  readonly stateDir: string;
  /** Seconds between polls. */
  readonly pollInterval: number;
  /** Each wait is pollInterval × (1 ± up to jitter), so hosts do not poll in lockstep. */
  readonly jitter: number;
  /** `127.x.x.x:PORT` or `[::1]:PORT` of the loopback cache proxy; port 0 takes any free port. */
  readonly proxyListen: string;
  /** Seconds one activation may take before it is treated as failed. */
  readonly activationTimeout: number;
  /** Polls between two heartbeats (one small PUT each; status/heartbeat.ts). */
  readonly heartbeatEvery: number;
}

export const AGENT_CONFIG_SHAPE = {
  required: ["store", "channel", "releaseKeys", "cacheKeys"],
  optional: [
    "host",
    "stateDir",
    "pollInterval",
    "jitter",
    "proxyListen",
    "activationTimeout",
    "heartbeatEvery",
  ],
} as const satisfies KeyShape;

/** Every key the config file accepts, in the order of `AgentConfig`. */
export const AGENT_CONFIG_KEYS: readonly string[] = [
  "store",
  "channel",
  "host",
  "releaseKeys",
  "cacheKeys",
  "stateDir",
  "pollInterval",
  "jitter",
  "proxyListen",
  "activationTimeout",
  "heartbeatEvery",
] satisfies readonly (keyof AgentConfig)[];

type DefaultedKey =
  | "stateDir"
  | "pollInterval"
  | "jitter"
  | "proxyListen"
  | "activationTimeout"
  | "heartbeatEvery";

/** The value of each optional key the file leaves out (`host` is resolved when the agent runs). */
export const AGENT_CONFIG_DEFAULTS: Pick<AgentConfig, DefaultedKey> = {
  stateDir: "/var/lib/nixship-agent",
  pollInterval: 30,
  jitter: 0.1,
  proxyListen: "127.0.0.1:0",
  activationTimeout: DEFAULT_ACTIVATION_TIMEOUT,
  heartbeatEvery: DEFAULT_HEARTBEAT_EVERY,
};

export const POLL_INTERVAL_RANGE = { min: 1, max: 86_400 } as const;
export const ACTIVATION_TIMEOUT_RANGE = { min: 1, max: 86_400 } as const;
export const HEARTBEAT_EVERY_RANGE = { min: 1, max: 1000 } as const;

const MAX_REPORTED = 20;

/** An agent config with problems; `problems` holds them all, the message the first 20. */
export class AgentConfigError extends InputError {
  readonly problems: readonly { readonly path: JsonPath; readonly message: string }[];

  constructor(source: string, problems: readonly { path: JsonPath; message: string }[]) {
    const lines = problems
      .slice(0, MAX_REPORTED)
      .map((p) => `${source}: ${formatJsonPath(p.path)}: ${p.message}`);
    if (problems.length > MAX_REPORTED) {
      lines.push(`${source}: … and ${problems.length - MAX_REPORTED} more problems`);
    }
    super("bad-agent-config", lines.join("\n"));
    this.problems = problems;
  }
}

/**
 * Parses the text of an agent config file; `source` names it in errors. Every fault, JSON
 * syntax included, is an InputError with code `bad-agent-config`.
 */
export function parseAgentConfig(text: string, source: string): AgentConfig {
  let value: unknown;
  try {
    value = parseJsonText(text, source);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    throw new InputError("bad-agent-config", err.message, {
      ...(err.hint === undefined ? {} : { hint: err.hint }),
      cause: err,
    });
  }
  const problems = new Problems();
  const config = readConfig(value, problems);
  if (problems.list.length > 0 || config === undefined) {
    throw new AgentConfigError(source, problems.list);
  }
  return config;
}

/** Splits a valid `proxyListen` into what `server.listen` takes; undefined if it is not one. */
export function parseLoopbackListen(text: string): { host: string; port: number } | undefined {
  const match = /^(?:(127(?:\.\d{1,3}){3})|\[(::1)\]):(\d{1,5})$/.exec(text);
  if (match === null) return undefined;
  const host = match[1] ?? match[2] ?? "";
  const port = Number(match[3]);
  const octetsOk = host === "::1" || host.split(".").every((o) => isDecimalByte(o));
  if (!octetsOk || port > 65_535 || !/^(0|[1-9]\d*)$/.test(match[3] ?? "")) return undefined;
  return { host, port };
}

function isDecimalByte(text: string): boolean {
  return /^(0|[1-9]\d{0,2})$/.test(text) && Number(text) <= 255;
}

const NAME_RULE = { pattern: NAME_PATTERN, maxLength: NAME_MAX_LENGTH };

function readConfig(value: unknown, problems: Problems): AgentConfig | undefined {
  const doc = readObject(value, [], problems, AGENT_CONFIG_SHAPE);
  if (doc === undefined) return undefined;
  const optional = <T>(key: string, read: (v: unknown, path: JsonPath) => T | undefined) =>
    doc[key] === undefined ? undefined : read(doc[key], [key]);
  const d = AGENT_CONFIG_DEFAULTS;
  const store = optional("store", (v, p) => readStoreUrl(v, p, problems));
  const channel = optional("channel", (v, p) => readString(v, p, problems, NAME_RULE));
  const host = optional("host", (v, p) => readString(v, p, problems, NAME_RULE));
  const releaseKeys = optional("releaseKeys", (v, p) => readKeys(v, p, problems));
  const cacheKeys = optional("cacheKeys", (v, p) => readKeys(v, p, problems));
  const config = {
    host,
    stateDir: optional("stateDir", (v, p) => readAbsolutePath(v, p, problems)) ?? d.stateDir,
    pollInterval:
      optional("pollInterval", (v, p) => readInteger(v, p, problems, POLL_INTERVAL_RANGE)) ??
      d.pollInterval,
    jitter: optional("jitter", (v, p) => readFraction(v, p, problems)) ?? d.jitter,
    proxyListen: optional("proxyListen", (v, p) => readListen(v, p, problems)) ?? d.proxyListen,
    activationTimeout:
      optional("activationTimeout", (v, p) =>
        readInteger(v, p, problems, ACTIVATION_TIMEOUT_RANGE),
      ) ?? d.activationTimeout,
    heartbeatEvery:
      optional("heartbeatEvery", (v, p) => readInteger(v, p, problems, HEARTBEAT_EVERY_RANGE)) ??
      d.heartbeatEvery,
  };
  if (
    store === undefined ||
    channel === undefined ||
    releaseKeys === undefined ||
    cacheKeys === undefined
  ) {
    return undefined;
  }
  return { store, channel, releaseKeys, cacheKeys, ...config };
}

function readStoreUrl(value: unknown, path: JsonPath, problems: Problems): string | undefined {
  const text = readString(value, path, problems);
  if (text === undefined) return undefined;
  // An empty env: whether the URL is valid must not depend on the shell that checks it.
  const problem = inputProblem(() => parseStoreUrl(text, {}));
  return problem === undefined ? text : problems.add(path, problem);
}

function readKeys(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): readonly string[] | undefined {
  const items = readArray(value, path, problems, 1);
  if (items === undefined) return undefined;
  const keys: string[] = [];
  items.forEach((item, i) => {
    const text = readString(item, [...path, i], problems);
    if (text === undefined) return;
    // Nix reads trusted-public-keys as a whitespace-separated list; parsePublicKey trims.
    const problem = /\s/.test(text)
      ? `must not contain whitespace (${got(text)})`
      : inputProblem(() => parsePublicKey(text));
    if (problem === undefined) keys.push(text);
    else problems.add([...path, i], problem);
  });
  return keys.length === items.length ? keys : undefined;
}

function readAbsolutePath(value: unknown, path: JsonPath, problems: Problems): string | undefined {
  const text = readString(value, path, problems);
  if (text === undefined) return undefined;
  if (!posix.isAbsolute(text) || text.includes("\0")) {
    return problems.add(path, `must be an absolute path (${got(text)})`);
  }
  return text;
}

function readFraction(value: unknown, path: JsonPath, problems: Problems): number | undefined {
  if (typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= 1) {
    return value;
  }
  return problems.add(path, `must be a number from 0 to 1 (${got(value)})`);
}

function readListen(value: unknown, path: JsonPath, problems: Problems): string | undefined {
  const text = readString(value, path, problems);
  if (text === undefined) return undefined;
  if (parseLoopbackListen(text) === undefined) {
    return problems.add(
      path,
      `must be a loopback address and port, 127.x.x.x:PORT or [::1]:PORT with PORT 0-65535 (${got(text)})`,
    );
  }
  return text;
}
