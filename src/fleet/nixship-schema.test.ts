// Keeps nixship.schema.json and the parser in step: the same keys, required lists and
// defaults at every level, and the same verdict on a corpus of fleet files (judged by the
// validator in test/support/json-schema.ts, which fails on any keyword it does not know).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fleetSchemaProblems } from "../../test/support/json-schema.js";
import { BUILDERS_PATTERN } from "./builders.js";
import {
  BUILD_HOST_PATTERN,
  COMMAND_CHECK_DEFAULTS,
  DEFAULT_SSH_USER,
  DELIVERY_MODES,
  HTTP_CHECK_DEFAULTS,
  INSTANCE_ID_PATTERN,
  NAME_MAX_LENGTH,
  NAME_PATTERN,
  POLICY_DEFAULTS,
  RELEASE_DEFAULTS,
  SSM_DEFAULTS,
} from "./fleet.js";
import { parseFleetValue } from "./fleet-file.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import { MAX_PAUSE_TIMEOUT, PAUSE_DEFAULTS } from "./pause-policy.js";
import {
  AWS_REGION_PATTERN,
  SSM_COMMAND_TIMEOUT_RANGE,
  SSM_DOCUMENT_NAME_PATTERN,
  SSM_TARGET_KEY_PATTERN,
  SSM_TARGET_LIMITS,
} from "./read-ssm.js";

type Schema = boolean | { readonly [keyword: string]: unknown };
type SchemaObject = { readonly [keyword: string]: unknown };

const schema = JSON.parse(
  readFileSync(new URL("./nixship.schema.json", import.meta.url), "utf8"),
) as SchemaObject;

function resolveRef(s: Schema): SchemaObject {
  if (typeof s === "boolean") throw new Error("expected a schema object");
  const ref = s.$ref as string | undefined;
  if (ref === undefined) return s;
  const name = /^#\/\$defs\/([A-Za-z]+)$/.exec(ref)?.[1];
  const target = name === undefined ? undefined : (schema.$defs as Record<string, Schema>)[name];
  if (target === undefined) throw new Error(`unresolved $ref ${ref}`);
  return resolveRef(target);
}

function parserAccepts(doc: unknown): boolean {
  try {
    parseFleetValue(doc, "f");
    return true;
  } catch {
    return false;
  }
}

const defs = schema.$defs as Record<string, SchemaObject>;
const properties = (s: SchemaObject) => s.properties as Record<string, SchemaObject>;

const hostSchema = resolveRef(
  (properties(schema).hosts as SchemaObject).additionalProperties as SchemaObject,
);

/** Where each object of the fleet file sits in the schema. */
const LOCATIONS: Record<keyof typeof FLEET_KEYS, SchemaObject> = {
  fleet: schema,
  cache: resolveRef(properties(schema).cache as SchemaObject),
  releases: resolveRef(properties(schema).releases as SchemaObject),
  ssh: resolveRef(properties(schema).ssh as SchemaObject),
  ssm: resolveRef(properties(schema).ssm as SchemaObject),
  build: resolveRef(properties(schema).build as SchemaObject),
  policy: resolveRef(properties(schema).policy as SchemaObject),
  policyOverride: resolveRef(
    (properties(schema).policies as SchemaObject).additionalProperties as SchemaObject,
  ),
  health: resolveRef(properties(defs.policy as SchemaObject).health as SchemaObject),
  httpCheck: resolveRef(
    (properties(defs.health as SchemaObject).http as SchemaObject).items as SchemaObject,
  ),
  commandCheck: resolveRef(
    (properties(defs.health as SchemaObject).commands as SchemaObject).items as SchemaObject,
  ),
  host: hostSchema,
  ssmTarget: resolveRef((properties(hostSchema).targets as SchemaObject).items as SchemaObject),
  secrets: resolveRef(properties(schema).secrets as SchemaObject),
  // `true`, `false` or this object.
  deltas: resolveRef(
    ((properties(schema).deltas as SchemaObject).oneOf as SchemaObject[])[1] as SchemaObject,
  ),
  prometheus: resolveRef(properties(schema).prometheus as SchemaObject),
  bake: resolveRef(properties(defs.policy as SchemaObject).bake as SchemaObject),
  analysisQuery: resolveRef(
    (resolveRef(properties(defs.policy as SchemaObject).analysis as SchemaObject)
      .items as SchemaObject) ?? {},
  ),
  baseline: resolveRef(properties(defs.analysisQuery as SchemaObject).baseline as SchemaObject),
  secret: resolveRef(
    (properties(defs.secrets as SchemaObject).entries as SchemaObject)
      .additionalProperties as SchemaObject,
  ),
};

describe("nixship.schema.json", () => {
  it("is draft 2020-12", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
  });

  for (const [name, shape] of Object.entries(FLEET_KEYS)) {
    it(`describes the same keys as the parser: ${name}`, () => {
      const at = LOCATIONS[name as keyof typeof FLEET_KEYS];
      expect(at.type).toBe("object");
      expect(at.additionalProperties).toBe(false);
      expect(Object.keys(properties(at)).sort()).toEqual(
        [...shape.required, ...shape.optional].sort(),
      );
      expect([...((at.required as string[] | undefined) ?? [])].sort()).toEqual(
        [...shape.required].sort(),
      );
    });
  }

  it("has the parser's defaults", () => {
    const policy = properties(LOCATIONS.policy);
    for (const [key, value] of Object.entries(POLICY_DEFAULTS)) {
      expect(policy[key]?.default, key).toBe(value);
    }
    const http = properties(LOCATIONS.httpCheck);
    expect(http.expectStatus?.default).toBe(HTTP_CHECK_DEFAULTS.expectStatus);
    expect(http.timeout?.default).toBe(HTTP_CHECK_DEFAULTS.timeout);
    expect(properties(LOCATIONS.commandCheck).timeout?.default).toBe(
      COMMAND_CHECK_DEFAULTS.timeout,
    );
    expect(properties(LOCATIONS.ssh).user?.default).toBe(DEFAULT_SSH_USER);
    expect(properties(LOCATIONS.host).delivery?.default).toBe("ssh");
    expect(properties(LOCATIONS.releases).offlineTimeout?.default).toBe(
      RELEASE_DEFAULTS.offlineTimeout,
    );
    const ssm = properties(LOCATIONS.ssm);
    expect(ssm.documentName?.default).toBe(SSM_DEFAULTS.documentName);
    expect(ssm.commandTimeout?.default).toBe(SSM_DEFAULTS.commandTimeout);
    expect(ssm.region?.default).toBeUndefined();
    for (const [key, value] of Object.entries(PAUSE_DEFAULTS)) {
      expect(policy[key]?.default, key).toBe(value);
    }
    expect(policy.pauseTimeout?.maximum).toBe(MAX_PAUSE_TIMEOUT);
  });

  it("has the parser's patterns and enums", () => {
    expect(defs.name?.pattern).toBe(NAME_PATTERN.source);
    expect(defs.name?.maxLength).toBe(NAME_MAX_LENGTH);
    const host = properties(LOCATIONS.host);
    expect(host.instanceId?.pattern).toBe(INSTANCE_ID_PATTERN.source);
    expect(host.delivery?.enum).toEqual([...DELIVERY_MODES]);
    expect(host.targets?.maxItems).toBe(SSM_TARGET_LIMITS.maxTargets);
    expect(resolveRef(properties(LOCATIONS.releases).channel as SchemaObject)).toBe(defs.name);
    const ssm = properties(LOCATIONS.ssm);
    expect(ssm.documentName?.pattern).toBe(SSM_DOCUMENT_NAME_PATTERN.source);
    expect(ssm.region?.pattern).toBe(AWS_REGION_PATTERN.source);
    expect(ssm.commandTimeout?.minimum).toBe(SSM_COMMAND_TIMEOUT_RANGE.min);
    expect(ssm.commandTimeout?.maximum).toBe(SSM_COMMAND_TIMEOUT_RANGE.max);
    const build = properties(LOCATIONS.build);
    expect(build.builders?.pattern).toBe(BUILDERS_PATTERN.source);
    expect(build.host?.pattern).toBe(BUILD_HOST_PATTERN.source);
    const target = properties(LOCATIONS.ssmTarget);
    expect(target.key?.pattern).toBe(SSM_TARGET_KEY_PATTERN.source);
    expect(target.values?.maxItems).toBe(SSM_TARGET_LIMITS.maxValues);
    expect((target.values?.items as SchemaObject | undefined)?.maxLength).toBe(
      SSM_TARGET_LIMITS.maxValueLength,
    );
  });

  const BUILDER_KEY = Buffer.from(
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C8okWi0dh2l9GKJl",
  ).toString("base64");
  const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
  const PATH = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-db1";
  const cache = { url: "s3://my-cache/nix?region=eu-west-1", publicKeys: [KEY] };
  const releases = { channel: "production", publicKeys: [KEY] };
  const targets = (...values: string[]) => [{ key: "tag:Role", values }];
  const ssmHost = (hostExtra: object, extra: object = {}) =>
    fleet({ cache, ...extra }, { delivery: "ssm", ...hostExtra });
  const host = (extra: object = {}) => ({ address: "10.0.0.2", system: ".#web", ...extra });
  const fleet = (extra: object = {}, hostExtra: object = {}) => ({
    hosts: { web1: host(hostExtra) },
    ...extra,
  });
  const http = (url: string) => ({ policy: { health: { http: [{ url }] } } });

  // [what, document, valid?]
  const corpus: [string, unknown, boolean][] = [
    ["the minimal fleet", fleet(), true],
    [
      "a full fleet",
      {
        $schema: "./nixship.schema.json",
        cache: { ...cache, substituter: "http://10.231.1.1:8080" },
        releases: { ...releases, offlineTimeout: 300 },
        ssh: { configFile: "ssh_config", knownHosts: "known_hosts", user: "deploy" },
        ssm: { documentName: "nixship-activate", region: "eu-west-1", commandTimeout: 1800 },
        policy: {
          parallel: 3,
          maxFailures: 1,
          canary: 0,
          confirmTimeout: 0,
          activationTimeout: 120,
          health: {
            http: [{ url: "http://{address}/health", expectStatus: 204, timeout: 2 }],
            commands: [{ run: "systemctl is-system-running", timeout: 10 }],
          },
        },
        hosts: {
          web1: { tags: ["web", "eu"], address: "10.231.1.2", sshHost: "lab-web1", system: PATH },
          i1: {
            delivery: "ssm",
            instanceId: "i-0123456789abcdef0",
            address: "10.0.0.9",
            system: PATH,
          },
          w: {
            delivery: "ssm",
            targets: [
              { key: "tag:Role", values: ["web", "api"] },
              { key: "resource-groups:Name", values: ["prod"] },
            ],
            address: "10.0.0.11",
            system: PATH,
          },
          a1: { delivery: "agent", address: "10.0.0.10", system: ".#a1" },
        },
      },
      true,
    ],
    ["no hosts", {}, false],
    ["empty hosts", { hosts: {} }, false],
    ["a bad host name", { hosts: { Web: host() } }, false],
    ["a 64-character host name", { hosts: { ["a".repeat(64)]: host() } }, false],
    ["an unknown top-level key", fleet({ extra: 1 }), false],
    ["an unknown host key", fleet({}, { tag: ["web"] }), false],
    ["an unknown policy key", fleet({ policy: { paralel: 2 } }), false],
    [
      "an unknown check key",
      fleet({ policy: { health: { commands: [{ run: "x", cmd: "y" }] } } }),
      false,
    ],
    ["a bad tag", fleet({}, { tags: ["web", 3] }), false],
    ["a repeated tag", fleet({}, { tags: ["web", "web"] }), false],
    ["an ssh host with neither address nor sshHost", { hosts: { web1: { system: ".#w" } } }, false],
    ["an ssh host with just sshHost", { hosts: { web1: { sshHost: "lab", system: ".#w" } } }, true],
    ["an ssh host with instanceId", fleet({}, { instanceId: "i-0123abcd" }), false],
    ["an ssm host with neither instanceId nor targets", ssmHost({}), false],
    [
      "an ssm host with both instanceId and targets",
      ssmHost({ instanceId: "i-0123abcd", targets: targets("web") }),
      false,
    ],
    ["an ssm host with targets", ssmHost({ targets: targets("web") }), true],
    ["an ssm host with empty targets", ssmHost({ targets: [] }), false],
    [
      "an ssm host with 6 targets",
      ssmHost({ targets: [1, 2, 3, 4, 5, 6].map((i) => ({ key: "tag:N", values: [`${i}`] })) }),
      false,
    ],
    ["a target with no values", ssmHost({ targets: targets() }), false],
    [
      "a target with 51 values",
      ssmHost({ targets: targets(...Array.from({ length: 51 }, (_, i) => `v${i}`)) }),
      false,
    ],
    ["a target value of 257 characters", ssmHost({ targets: targets("v".repeat(257)) }), false],
    ["a target value of 256 characters", ssmHost({ targets: targets("v".repeat(256)) }), true],
    ["an empty target value", ssmHost({ targets: targets("") }), false],
    ["a target value with a newline", ssmHost({ targets: targets("a\nb") }), false],
    ["a target value with DEL", ssmHost({ targets: targets("a\u007fb") }), false],
    ["a target value with a C1 control", ssmHost({ targets: targets("a\u0085b") }), false],
    ["a target value with non-ASCII letters", ssmHost({ targets: targets("été") }), true],
    ["a target value with a space", ssmHost({ targets: targets("web server") }), true],
    ["a bad target key", ssmHost({ targets: [{ key: "Role", values: ["web"] }] }), false],
    ["a tag key with a space", ssmHost({ targets: [{ key: "tag:a b", values: ["x"] }] }), false],
    ["a tag-key target", ssmHost({ targets: [{ key: "tag-key", values: ["Role"] }] }), true],
    [
      "an unknown target key",
      ssmHost({ targets: [{ key: "tag:Role", values: ["web"], value: "x" }] }),
      false,
    ],
    ["an ssh host with targets", fleet({}, { targets: targets("web") }), false],
    [
      "an agent host with targets",
      fleet({ cache, releases }, { delivery: "agent", targets: targets("web") }),
      false,
    ],
    [
      "an ssm host with a bad instanceId",
      fleet({ cache }, { delivery: "ssm", instanceId: "i-XYZ12345" }),
      false,
    ],
    [
      "an ssm host with sshHost",
      fleet({ cache }, { delivery: "ssm", instanceId: "i-0123abcd", sshHost: "x" }),
      false,
    ],
    [
      "an ssm host without a cache",
      fleet({}, { delivery: "ssm", instanceId: "i-0123abcd" }),
      false,
    ],
    ["an agent host without a cache", fleet({ releases }, { delivery: "agent" }), false],
    ["an agent host without releases", fleet({ cache }, { delivery: "agent" }), false],
    ["an agent host", fleet({ cache, releases }, { delivery: "agent" }), true],
    ["releases without agent hosts", fleet({ releases }), true],
    ["releases without a channel", fleet({ releases: { publicKeys: [KEY] } }), false],
    ["releases with a bad channel", fleet({ releases: { ...releases, channel: "Prod" } }), false],
    ["releases without keys", fleet({ releases: { channel: "prod" } }), false],
    ["releases with no keys", fleet({ releases: { ...releases, publicKeys: [] } }), false],
    ["releases with a bad key", fleet({ releases: { ...releases, publicKeys: ["k"] } }), false],
    ["an offlineTimeout of 0", fleet({ releases: { ...releases, offlineTimeout: 0 } }), false],
    ["an unknown releases key", fleet({ releases: { ...releases, chanel: "x" } }), false],
    ["an empty ssm section", fleet({ ssm: {} }), true],
    ["a short document name", fleet({ ssm: { documentName: "ab" } }), false],
    ["a document name with a slash", fleet({ ssm: { documentName: "a/b/c" } }), false],
    ["a GovCloud region", fleet({ ssm: { region: "us-gov-west-1" } }), true],
    ["a region without a number", fleet({ ssm: { region: "eu-west" } }), false],
    ["an upper-case region", fleet({ ssm: { region: "EU-WEST-1" } }), false],
    ["a commandTimeout of 29", fleet({ ssm: { commandTimeout: 29 } }), false],
    ["a commandTimeout of 172800", fleet({ ssm: { commandTimeout: 172800 } }), true],
    ["a commandTimeout of 172801", fleet({ ssm: { commandTimeout: 172801 } }), false],
    ["an unknown ssm key", fleet({ ssm: { document: "x" } }), false],
    ["an unknown delivery", fleet({}, { delivery: "scp" }), false],
    ["no system", { hosts: { web1: { address: "a" } } }, false],
    ["a store path system", fleet({}, { system: PATH }), true],
    ["a store path with a bad hash", fleet({}, { system: "/nix/store/eeee-x" }), false],
    ["a system without #", fleet({}, { system: "web" }), false],
    ["a system starting with -", fleet({}, { system: "-.#web" }), false],
    ["an address that looks like an option", fleet({}, { address: "-oProxyCommand=x" }), false],
    ["parallel 0", fleet({ policy: { parallel: 0 } }), false],
    ["a fractional canary", fleet({ policy: { canary: 0.5 } }), false],
    ["a negative maxFailures", fleet({ policy: { maxFailures: -1 } }), false],
    ["confirmTimeout 0", fleet({ policy: { confirmTimeout: 0 } }), true],
    ["activationTimeout 0", fleet({ policy: { activationTimeout: 0 } }), false],
    ["activationTimeout 1", fleet({ policy: { activationTimeout: 1 } }), true],
    ["a pause after the canary", fleet({ policy: { pauseAfter: "canary" } }), true],
    ["a pause after wave 2", fleet({ policy: { pauseAfter: 2 } }), true],
    ["pauses in a list", fleet({ policy: { pauseAfter: ["canary", 3] } }), true],
    ["an empty list of pauses", fleet({ policy: { pauseAfter: [] } }), false],
    ["a pause after wave 0", fleet({ policy: { pauseAfter: 0 } }), false],
    ["a pause after a named wave", fleet({ policy: { pauseAfter: "first" } }), false],
    [
      "a pause's deadline and outcome",
      fleet({ policy: { pauseAfter: 1, pauseTimeout: 60, onPauseTimeout: "resume" } }),
      true,
    ],
    ["a pause's deadline of 0", fleet({ policy: { pauseAfter: 1, pauseTimeout: 0 } }), false],
    [
      "a pause's deadline past a week",
      fleet({ policy: { pauseAfter: 1, pauseTimeout: 604801 } }),
      false,
    ],
    [
      "an unknown pause outcome",
      fleet({ policy: { pauseAfter: 1, onPauseTimeout: "wait" } }),
      false,
    ],
    ["a pause's deadline without a pause", fleet({ policy: { pauseTimeout: 60 } }), false],
    ["a pause's outcome without a pause", fleet({ policy: { onPauseTimeout: "resume" } }), false],
    ["a pause in a host's policy", fleet({ policies: { web1: { pauseAfter: 1 } } }), false],
    [
      "a command timeout of 0",
      fleet({ policy: { health: { commands: [{ run: "x", timeout: 0 }] } } }),
      false,
    ],
    ["an http check", fleet(http("https://{name}.lan/health?via={address}")), true],
    ["an unknown placeholder", fleet(http("http://{host}/health")), false],
    ["a non-http check URL", fleet(http("ftp://{address}/")), false],
    [
      "{address} with a host lacking one",
      { ...http("http://{address}/"), hosts: { w: { sshHost: "w", system: ".#w" } } },
      false,
    ],
    [
      "{name} with a host lacking an address",
      { ...http("http://{name}/"), hosts: { w: { sshHost: "w", system: ".#w" } } },
      true,
    ],
    [
      "a status of 600",
      fleet({ policy: { health: { http: [{ url: "http://x/", expectStatus: 600 }] } } }),
      false,
    ],
    ["a cache without keys", fleet({ cache: { url: "file:///srv/c" } }), false],
    ["a cache with no keys", fleet({ cache: { url: "file:///srv/c", publicKeys: [] } }), false],
    ["a cache over http", fleet({ cache: { ...cache, url: "http://cache.lan/" } }), false],
    [
      "a substituter without a scheme",
      fleet({ cache: { ...cache, substituter: "cache.lan" } }),
      false,
    ],
    ["an ssh user that looks like an option", fleet({ ssh: { user: "-lroot" } }), false],
    ["a non-object", [], false],
    ["an empty build section", fleet({ build: {} }), true],
    [
      "builders in Nix's syntax",
      fleet({
        build: {
          builders: `ssh-ng://root@b1 x86_64-linux /k 2 1 kvm - ${BUILDER_KEY};ssh://arm aarch64-linux`,
          maxJobs: 0,
        },
      }),
      true,
    ],
    ["builders on two lines", fleet({ build: { builders: "ssh-ng://b1\nssh-ng://b2 -" } }), true],
    ["a machines file", fleet({ build: { builders: "@machines" } }), true],
    ["a builder over http", fleet({ build: { builders: "http://b1 x86_64-linux" } }), false],
    ["a builder without a scheme", fleet({ build: { builders: "b1 x86_64-linux" } }), false],
    ["a builder with a bad system", fleet({ build: { builders: "ssh://b1 x86_64" } }), false],
    ["a builder with a relative key", fleet({ build: { builders: "ssh://b1 - key" } }), false],
    ["a builder with 9 fields", fleet({ build: { builders: "ssh://b1 - - 1 1 - - - x" } }), false],
    ["a builder with a comment", fleet({ build: { builders: "ssh://b1 # arm" } }), false],
    ["builders that are not a string", fleet({ build: { builders: ["ssh://b1"] } }), false],
    ["a build host", fleet({ build: { host: "root@builder1" } }), true],
    ["a build host that looks like an option", fleet({ build: { host: "-oProxy=x" } }), false],
    ["a build host and builders", fleet({ build: { host: "b", builders: "ssh://b1" } }), false],
    ["a negative maxJobs", fleet({ build: { maxJobs: -1 } }), false],
    ["an unknown build key", fleet({ build: { hosts: "b" } }), false],
  ];

  for (const [what, doc, expected] of corpus) {
    it(`agrees with the parser on ${what} (${expected ? "valid" : "invalid"})`, () => {
      expect(parserAccepts(doc), "parser").toBe(expected);
      expect(fleetSchemaProblems(doc).length === 0, "schema").toBe(expected);
    });
  }
});
