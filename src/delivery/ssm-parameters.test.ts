import { describe, expect, it } from "vitest";
import { PRUNE_TIMEOUT } from "../host/activation.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeployRequest } from "./delivery.js";
import { encodeHealthChecks } from "./ssm-document.js";
import {
  activateParameters,
  bootVerdictParameters,
  checkParameters,
  hostRecipients,
  pruneParameters,
  rollbackParameters,
  sendTargets,
  statusParameters,
} from "./ssm-parameters.js";

const PATH = "/nix/store/00000000000000000000000000000000-nixos-system-web" as StorePath;
const CHECK = { run: "systemctl is-active nginx", timeout: 20 };

const request = (extra: Partial<DeployRequest> = {}): DeployRequest => ({
  path: PATH,
  action: "switch",
  substituters: ["https://cache.example/a", "https://cache.example/b"],
  trustedKeys: ["cache:AAAA"],
  commandChecks: [CHECK],
  httpChecks: [],
  confirmTimeout: 30,
  activationTimeout: 300,
  ...extra,
});

describe("activateParameters", () => {
  it("carries the request, each value a one-element list, and leaves empty values out", () => {
    // The deadline: the activation, each check the longest check's time, and the session's margin.
    expect(activateParameters(3600, request())).toEqual({
      Command: ["activate"],
      StorePath: [PATH],
      Action: ["switch"],
      Substituters: ["https://cache.example/a https://cache.example/b"],
      TrustedPublicKeys: ["cache:AAAA"],
      HealthChecks: [encodeHealthChecks([CHECK])],
      ActivationTimeout: ["300"],
      ExecutionTimeout: [String(300 + 20 + 90)],
    });
  });

  it("never lets the run outlast the fleet's command timeout", () => {
    expect(activateParameters(120, request()).ExecutionTimeout).toEqual(["120"]);
  });

  it("passes the secrets' URL and digest, the age tool only with them, and the delta tool", () => {
    const secrets = { url: "https://bucket.example/s?sig=x", sha256: "ab".repeat(32) };
    const age = "/nix/store/11111111111111111111111111111111-age" as StorePath;
    const zstd = "/nix/store/22222222222222222222222222222222-zstd" as StorePath;
    const withSecrets = request({
      secrets: { bundle: "bundle", digest: "d", age },
      deltaTool: zstd,
    });
    expect(activateParameters(3600, withSecrets, secrets)).toMatchObject({
      SecretsUrl: [secrets.url],
      SecretsSha256: [secrets.sha256],
      AgePath: [age],
      DeltaTool: [zstd],
    });
    const without = activateParameters(3600, withSecrets);
    expect(without).not.toHaveProperty("SecretsUrl");
    expect(without).not.toHaveProperty("AgePath");
  });

  it("passes what the host must run now as ExpectCurrent, only when the request expects one", () => {
    const ran = "/nix/store/33333333333333333333333333333333-nixos-system-web-old" as StorePath;
    expect(activateParameters(3600, request({ expect: ran }))).toMatchObject({
      ExpectCurrent: [ran],
    });
    expect(activateParameters(3600, request())).not.toHaveProperty("ExpectCurrent");
  });

  it("turns a reboot with its token into a boot activation recorded under that token", () => {
    const rebooting = request({ reboot: { timeout: 600, rollback: true } });
    expect(activateParameters(3600, rebooting, undefined, "s1")).toMatchObject({
      Command: ["activate"],
      Action: ["boot"],
      RebootToken: ["s1"],
      RebootRollback: ["true"],
    });
    // No token: an activation as asked, no boot to record.
    const plain = activateParameters(3600, rebooting);
    expect(plain.Action).toEqual(["switch"]);
    expect(plain).not.toHaveProperty("RebootToken");
  });

  it("records a boot set for later under the token, without rebooting", () => {
    const later = request({ action: "boot", recordBoot: true });
    const parameters = activateParameters(3600, later, undefined, "s2");
    expect(parameters).toMatchObject({ Action: ["boot"], BootToken: ["s2"] });
    expect(parameters).not.toHaveProperty("RebootToken");
  });

  it("judges a pending boot: after-boot under the boot's token, with the checks", () => {
    const judged = request({
      judgeBoot: {
        token: "a7",
        generation: 4,
        previous: undefined,
        reboot: { timeout: 600, rollback: false },
      },
    });
    expect(activateParameters(3600, judged)).toEqual({
      Command: ["after-boot"],
      RebootToken: ["a7"],
      RebootRollback: ["false"],
      HealthChecks: [encodeHealthChecks([CHECK])],
      // Each check the longest check's time, and the settling time.
      ExecutionTimeout: [String(20 + 90)],
    });
    expect(activateParameters(60, { ...judged, commandChecks: [] })).toEqual({
      Command: ["after-boot"],
      RebootToken: ["a7"],
      RebootRollback: ["false"],
      ExecutionTimeout: ["60"],
    });
  });
});

describe("the other verbs' Parameters", () => {
  it("asks status within its own minute", () => {
    expect(statusParameters()).toEqual({ Command: ["status"], ExecutionTimeout: ["60"] });
  });

  it("sends the bake's command checks, each within its own time; none without checks", () => {
    const quick = { run: "true", timeout: 5, retry: false };
    expect(checkParameters([CHECK, quick])).toEqual({
      Command: ["check"],
      HealthChecks: [encodeHealthChecks([CHECK, quick])],
      ExecutionTimeout: [String(20 + 5 + 60)],
    });
    expect(checkParameters([])).toBeUndefined();
  });

  it("sends a boot's verdict under its token, within the settling time", () => {
    expect(bootVerdictParameters(3600, "confirm-boot", "s9", true)).toEqual({
      Command: ["confirm-boot"],
      RebootToken: ["s9"],
      RebootRollback: ["true"],
      ExecutionTimeout: ["90"],
    });
    expect(bootVerdictParameters(30, "abort-boot", "s9", false).ExecutionTimeout).toEqual(["30"]);
  });

  it("prunes to the generations kept, within the prune's time or the command timeout", () => {
    expect(pruneParameters(3600, 2)).toEqual({
      Command: ["prune"],
      KeepGenerations: ["2"],
      ExecutionTimeout: [String(PRUNE_TIMEOUT)],
    });
    expect(pruneParameters(60, 2).ExecutionTimeout).toEqual(["60"]);
  });
});

describe("rollbackParameters", () => {
  it("goes to the generation named, or the one before the current when none is", () => {
    expect(rollbackParameters(900, 3, 300)).toEqual({
      Command: ["rollback"],
      ActivationTimeout: ["300"],
      ExecutionTimeout: ["900"],
      Generation: ["3"],
    });
    expect(rollbackParameters(900, undefined, 300)).not.toHaveProperty("Generation");
  });
});

describe("hostRecipients", () => {
  it("sends to a host's instance, or to every instance its tag targets match", () => {
    expect(hostRecipients({ instanceId: "i-0123", targets: undefined })).toEqual({
      InstanceIds: ["i-0123"],
    });
    const targets = [{ key: "tag:role", values: ["web", "api"] }];
    expect(hostRecipients({ instanceId: undefined, targets })).toEqual({
      Targets: [{ Key: "tag:role", Values: ["web", "api"] }],
    });
    expect(sendTargets(targets)).toEqual([{ Key: "tag:role", Values: ["web", "api"] }]);
  });
});
