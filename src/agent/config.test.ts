import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { POLICY_DEFAULTS } from "../fleet/fleet.js";
import {
  AGENT_CONFIG_DEFAULTS,
  AGENT_CONFIG_KEYS,
  AGENT_CONFIG_SHAPE,
  AgentConfigError,
  DEFAULT_AGENT_CONFIG,
  parseAgentConfig,
  parseLoopbackListen,
} from "./config.js";

const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const RELEASE_KEY = "release-1:tl1xIh0jT4GHqL+CHzULR1xNvHlRjsdv6oVH9TGTj9s=";

const MINIMAL = {
  store: "s3://fleet-bucket/prod?region=eu-west-1",
  channel: "prod",
  releaseKeys: [RELEASE_KEY],
  cacheKeys: [KEY],
};

const FULL = {
  ...MINIMAL,
  host: "web1",
  stateDir: "/srv/agent",
  pollInterval: 60,
  jitter: 0.5,
  proxyListen: "[::1]:5000",
  activationTimeout: 1200,
  heartbeatEvery: 4,
};

const parse = (doc: unknown) => parseAgentConfig(JSON.stringify(doc), "agent.json");

/** The problems parsing `doc` reports, without the "agent.json: " prefix. */
function problemsOf(doc: unknown): string[] {
  try {
    parse(doc);
  } catch (err) {
    if (err instanceof AgentConfigError) {
      expect(err.code).toBe("bad-agent-config");
      expect(err.exitCode).toBe(2);
      return err.message.split("\n").map((line) => line.replace(/^agent\.json: /, ""));
    }
    throw err;
  }
  return [];
}

const withKey = (key: string, value: unknown) => ({ ...MINIMAL, [key]: value });

describe("parseAgentConfig", () => {
  it("reads a minimal config and fills in the defaults", () => {
    expect(parse(MINIMAL)).toEqual({
      ...MINIMAL,
      host: undefined,
      stateDir: "/var/lib/nixship-agent",
      pollInterval: 30,
      jitter: 0.1,
      proxyListen: "127.0.0.1:0",
      activationTimeout: 600,
      heartbeatEvery: 10,
    });
    expect(AGENT_CONFIG_DEFAULTS).toEqual({
      stateDir: "/var/lib/nixship-agent",
      pollInterval: 30,
      jitter: 0.1,
      proxyListen: "127.0.0.1:0",
      activationTimeout: 600,
      heartbeatEvery: 10,
    });
    expect(DEFAULT_AGENT_CONFIG).toBe("/etc/nixship/agent.json");
  });

  it("gives an activation the fleet policy's default time, as ssh and ssm deploys do", () => {
    expect(parse(MINIMAL).activationTimeout).toBe(POLICY_DEFAULTS.activationTimeout);
  });

  it("reads every key as written", () => {
    const config = parse(FULL);
    expect(config).toEqual(FULL);
    expect(Object.keys(config).sort()).toEqual([...AGENT_CONFIG_KEYS].sort());
  });

  it("lists every key once, in the shape and in AGENT_CONFIG_KEYS", () => {
    const shape = [...AGENT_CONFIG_SHAPE.required, ...AGENT_CONFIG_SHAPE.optional];
    expect([...shape].sort()).toEqual([...AGENT_CONFIG_KEYS].sort());
    expect(new Set(AGENT_CONFIG_KEYS).size).toBe(AGENT_CONFIG_KEYS.length);
  });

  it("accepts the other store URL forms", () => {
    for (const store of [
      "file:///srv/fleet",
      "/srv/fleet",
      "s3://fleet-bucket",
      "s3://fleet-bucket/a/b?region=us-west-2&endpoint=http://127.0.0.1:9000",
    ]) {
      expect(parse(withKey("store", store)).store).toBe(store);
    }
  });

  it("accepts the edges of each range", () => {
    const edges = { pollInterval: [1, 86_400], jitter: [0, 1, 0.25], activationTimeout: [1] };
    for (const [key, values] of Object.entries(edges)) {
      for (const value of values) expect(problemsOf(withKey(key, value))).toEqual([]);
    }
    for (const listen of ["127.0.0.1:65535", "127.255.255.254:8080", "[::1]:0"]) {
      expect(parse(withKey("proxyListen", listen)).proxyListen).toBe(listen);
    }
  });

  it("requires store, channel, releaseKeys and cacheKeys, and reports them all", () => {
    expect(problemsOf({})).toEqual([
      "store: is required",
      "channel: is required",
      "releaseKeys: is required",
      "cacheKeys: is required",
    ]);
  });

  it("refuses a document that is not an object", () => {
    expect(problemsOf([])).toEqual(["(top level): must be an object (got an array)"]);
  });

  it("refuses unknown keys, suggesting the closest", () => {
    expect(problemsOf(withKey("pollIntervall", 10))).toEqual([
      'pollIntervall: unknown key (did you mean "pollInterval"?)',
    ]);
    const [problem] = problemsOf(withKey("zzz", 1));
    expect(problem).toMatch(/^zzz: unknown key \(known keys: store, channel, /);
  });

  it.each([
    ["store", "", /^store: must be a non-empty string/],
    ["store", "relative/dir", /^store: bad store URL "relative\/dir": it is neither/],
    ["store", "s3://Bad_Bucket", /^store: bad store URL .*not a valid bucket name/],
    ["store", "https://example.com/x", /^store: bad store URL .*unknown scheme "https:"/],
    ["store", "s3://fleet-bucket?color=red", /^store: bad store URL .*unknown parameter "color"/],
    ["channel", "Prod", /^channel: must be a string matching/],
    ["channel", 7, /^channel: must be a non-empty string|^channel: must be a string matching/],
    ["channel", "x".repeat(64), /^channel: must be a string matching .*at most 63 characters/],
    ["host", "web_1", /^host: must be a string matching/],
    ["host", "", /^host: must be a string matching/],
    ["releaseKeys", [], /^releaseKeys: must hold at least 1 item$/],
    ["releaseKeys", RELEASE_KEY, /^releaseKeys: must be an array \(got "release-1:/],
    ["cacheKeys", {}, /^cacheKeys: must be an array \(got an object\)$/],
    ["stateDir", "var/lib/agent", /^stateDir: must be an absolute path \(got "var\/lib\/agent"\)$/],
    ["stateDir", "", /^stateDir: must be a non-empty string/],
    ["pollInterval", 0, /^pollInterval: must be a whole number from 1 to 86400 \(got 0\)$/],
    ["pollInterval", 86_401, /^pollInterval: must be a whole number from 1 to 86400/],
    ["pollInterval", 1.5, /^pollInterval: must be a whole number/],
    ["pollInterval", "30", /^pollInterval: must be a whole number .*\(got "30"\)$/],
    ["jitter", -0.1, /^jitter: must be a number from 0 to 1 \(got -0\.1\)$/],
    ["jitter", 1.01, /^jitter: must be a number from 0 to 1/],
    ["jitter", "0.1", /^jitter: must be a number from 0 to 1 \(got "0\.1"\)$/],
    ["proxyListen", "0.0.0.0:8080", /^proxyListen: must be a loopback address and port/],
    ["proxyListen", "localhost:8080", /^proxyListen: must be a loopback address/],
    ["proxyListen", "127.0.0.1", /^proxyListen: must be a loopback address/],
    ["proxyListen", "127.0.0.1:65536", /^proxyListen: must be a loopback address/],
    ["proxyListen", "127.0.0.256:80", /^proxyListen: must be a loopback address/],
    ["proxyListen", "::1:80", /^proxyListen: must be a loopback address/],
    ["proxyListen", "[::2]:80", /^proxyListen: must be a loopback address/],
    ["proxyListen", "10.0.0.1:80", /^proxyListen: must be a loopback address/],
    ["activationTimeout", 0, /^activationTimeout: must be a whole number from 1 to 86400/],
    ["activationTimeout", null, /^activationTimeout: must be a whole number .*\(got null\)$/],
  ])("refuses %s = %j", (key, value, expected) => {
    const problems = problemsOf(withKey(key, value));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(expected);
  });

  it("names the index of a bad key", () => {
    expect(problemsOf(withKey("cacheKeys", [KEY, "nope", 3]))).toEqual([
      "cacheKeys[1]: public key must look like 'NAME:BASE64', got 'nope'",
      "cacheKeys[2]: must be a non-empty string (got 3)",
    ]);
    const [short] = problemsOf(withKey("releaseKeys", [RELEASE_KEY, "k:AAAA"]));
    expect(short).toMatch(/^releaseKeys\[1\]: public key 'k' must hold 32 bytes of base64/);
    const [spaced] = problemsOf(withKey("cacheKeys", [` ${KEY}`]));
    expect(spaced).toMatch(/^cacheKeys\[0\]: must not contain whitespace/);
  });

  it("reports every problem at once", () => {
    const doc = { ...FULL, channel: "", jitter: 2, stateDir: "rel", extra: true };
    expect(problemsOf(doc).map((p) => p.split(":")[0])).toEqual([
      "extra",
      "channel",
      "stateDir",
      "jitter",
    ]);
  });

  it("turns JSON syntax errors and duplicate keys into bad-agent-config", () => {
    const bad = (text: string) => {
      try {
        parseAgentConfig(text, "agent.json");
      } catch (err) {
        expect(err).toBeInstanceOf(InputError);
        return err as InputError;
      }
      throw new Error("expected an error");
    };
    const syntax = bad('{"store": ');
    expect(syntax.code).toBe("bad-agent-config");
    expect(syntax.message).toMatch(/^agent\.json:1:\d+: invalid JSON/);
    const duplicate = bad('{"channel": "a", "channel": "b"}');
    expect(duplicate.code).toBe("bad-agent-config");
    expect(duplicate.message).toMatch(/duplicate key "channel"/);
  });
});

describe("parseLoopbackListen", () => {
  it("splits valid addresses for server.listen", () => {
    expect(parseLoopbackListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseLoopbackListen("[::1]:8080")).toEqual({ host: "::1", port: 8080 });
  });

  it("refuses leading zeros, which some parsers read as octal", () => {
    expect(parseLoopbackListen("127.0.0.01:80")).toBeUndefined();
    expect(parseLoopbackListen("127.0.0.1:080")).toBeUndefined();
  });
});
