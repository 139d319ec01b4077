// The one activation session over a fake transport: which steps each action has, what is run
// on the host and how (fresh or shared, with which deadline), and every way it can fail.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTIONS, type Action } from "../fleet/action.js";
import type { StorePath } from "../nix/store-path.js";
import {
  type ActivateOptions,
  type ActivationResult,
  activateArgs,
  type ScriptCommand,
  scriptArgs,
} from "./activation.js";
import {
  type ActivationTransport,
  activateDeadline,
  activationSteps,
  buildDeployRequest,
  type DeployRequest,
  runActivationSession,
  type ScriptRun,
  type ScriptRunOptions,
  SESSION_MARGIN,
  type SessionPhase,
} from "./activation-session.js";

const PATH = "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web" as StorePath;
const OLD = "/nix/store/1c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web";

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    res.statusCode = req.url === "/ok" ? 200 : 500;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function request(extra: Partial<DeployRequest> = {}): DeployRequest {
  return {
    path: PATH,
    action: "switch",
    substituters: ["http://cache"],
    trustedKeys: ["cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I="],
    commandChecks: [{ run: "true", timeout: 7 }],
    httpChecks: [],
    confirmTimeout: 30,
    activationTimeout: 120,
    ...extra,
  };
}

const ok = (result: ActivationResult): ScriptRun => ({ code: 0, result, failure: "" });
const code = (n: number, result: ActivationResult): ScriptRun => ({ code: n, result, failure: "" });
const silent = (failure: string): ScriptRun => ({ code: 255, result: undefined, failure });

function activated(action: Action, token?: string): ActivationResult {
  return {
    ok: true,
    command: "activate",
    result: token ? "awaiting-confirmation" : "activated",
    path: PATH,
    action,
    previous: OLD,
    previousGeneration: 4,
    generation: 5,
    ...(token ? { token } : {}),
  };
}

const settled = (
  command: "confirm" | "abort",
  result: "confirmed" | "rolled-back" | "activated" | "unknown-token",
  exitCode: number,
  stoppedIn?: string,
  message = `${command}: ${result}`,
): ActivationResult => ({
  ok: exitCode === 0,
  command,
  result,
  exitCode,
  message,
  generation: 4,
  current: OLD,
  ...(stoppedIn === undefined ? {} : { stoppedIn }),
});

/** activate.sh rollback's answer: back on OLD, generation 4. */
const ROLLED_BACK: ActivationResult = {
  ok: true,
  command: "rollback",
  result: "rolled-back",
  generation: 4,
  path: OLD,
};

interface Call {
  readonly kind: "activate" | "run";
  readonly args: readonly string[];
  readonly options: ScriptRunOptions;
}

/** A transport that answers from a script, by command, and records every call. */
class FakeTransport implements ActivationTransport {
  readonly calls: Call[] = [];
  preflights = 0;
  constructor(
    readonly answers: {
      activate?: (args: readonly string[], o: ScriptRunOptions) => Promise<ScriptRun> | ScriptRun;
      confirm?: ScriptRun;
      abort?: ScriptRun;
      rollback?: ScriptRun;
      preflight?: string;
    },
    readonly confirms = true,
  ) {}
  async preflight(): Promise<string | undefined> {
    this.preflights++;
    return this.answers.preflight;
  }
  async activate(activation: ActivateOptions, options: ScriptRunOptions): Promise<ScriptRun> {
    // Recorded as activate.sh's arguments: what every transport sends (or SSM maps).
    const args = activateArgs(activation);
    this.calls.push({ kind: "activate", args, options });
    const token = flag(args, "--token");
    const window = Number(flag(args, "--confirm-timeout") ?? "0");
    const action = (flag(args, "--action") ?? "switch") as Action;
    return this.answers.activate
      ? this.answers.activate(args, options)
      : ok(activated(action, window > 0 ? token : undefined));
  }
  async run(command: ScriptCommand, options: ScriptRunOptions): Promise<ScriptRun> {
    const args = scriptArgs(command);
    this.calls.push({ kind: "run", args, options });
    const answer = this.answers[command.verb as "confirm" | "abort" | "rollback"];
    if (answer === undefined) throw new Error(`unexpected ${args.join(" ")}`);
    return answer;
  }
  /** The commands run after activate, with whether each was fresh. */
  get followUps(): string[] {
    return this.calls
      .filter((c) => c.kind === "run")
      .map(
        (c) =>
          `${c.args[0]}${c.args.length > 1 ? ` ${c.args.slice(1).join(" ")}` : ""}${c.options.fresh ? " (fresh)" : ""}`,
      );
  }
  get activateArgs(): readonly string[] {
    return this.calls.find((c) => c.kind === "activate")?.args ?? [];
  }
}

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function session(transport: ActivationTransport, req: DeployRequest, signal?: AbortSignal) {
  const phases: SessionPhase[] = [];
  const logs: string[] = [];
  const outcome = await runActivationSession(transport, req, {
    phase: (p) => phases.push(p),
    log: (l) => logs.push(l),
    token: "tok",
    ...(signal ? { signal } : {}),
  });
  return { outcome, phases, logs };
}

describe("activationSteps: one decision for every mode", () => {
  it("has HTTP checks and a window only for actions that run the new system now", () => {
    const checks = [{ url: `http://x/`, expectStatus: 200, timeout: 5 }];
    const table = ACTIONS.map((action) => [
      action,
      activationSteps({ action, httpChecks: checks, confirmTimeout: 30 }, true),
    ]);
    expect(table).toEqual([
      ["switch", { httpChecks: true, confirmWindow: 30 }],
      ["boot", { httpChecks: false, confirmWindow: 0 }],
      ["test", { httpChecks: true, confirmWindow: 30 }],
      ["dry-activate", { httpChecks: false, confirmWindow: 0 }],
    ]);
  });

  it("keeps the configured window; with confirmation off, one as long as the HTTP checks", () => {
    const checks = [
      { url: "http://x/", expectStatus: 200, timeout: 20 },
      { url: "http://y/", expectStatus: 200, timeout: 15 },
    ];
    const steps = (confirmTimeout: number, httpChecks = checks) =>
      activationSteps({ action: "switch", httpChecks, confirmTimeout }, true);
    expect(steps(4)).toEqual({ httpChecks: true, confirmWindow: 4 });
    expect(steps(0)).toEqual({ httpChecks: true, confirmWindow: 45 });
    expect(steps(0, [])).toEqual({ httpChecks: false, confirmWindow: 0 });
    expect(steps(30, [])).toEqual({ httpChecks: false, confirmWindow: 30 });
    // Checks of a day each: the window still ends within a day.
    const long = checks.map((c) => ({ ...c, timeout: 86_400 }));
    expect(steps(0, long)).toEqual({ httpChecks: true, confirmWindow: 86_400 });
  });

  it("opens no window over a transport that cannot come back to confirm (ssm)", () => {
    const checks = [{ url: "http://x/", expectStatus: 200, timeout: 5 }];
    expect(
      activationSteps({ action: "switch", httpChecks: checks, confirmTimeout: 30 }, false),
    ).toEqual({
      httpChecks: true,
      confirmWindow: 0,
    });
  });

  it("bounds the activation by its timeout, the command checks and a margin", () => {
    const req = request({
      activationTimeout: 100,
      commandChecks: [
        { run: "a", timeout: 7 },
        { run: "b", timeout: 3 },
      ],
      httpChecks: [{ url: "http://x/", expectStatus: 200, timeout: 5 }],
    });
    // Each command check gets the longest timeout of them all on the host.
    expect(activateDeadline(req)).toBe(100 + 2 * 7 + SESSION_MARGIN);
  });
});

describe("runActivationSession, each action", () => {
  it("switch: activates with a window, checks, and confirms over a fresh connection", async () => {
    const t = new FakeTransport({ confirm: ok(settled("confirm", "confirmed", 0)) });
    const req = request({ httpChecks: [{ url: `${base}/ok`, expectStatus: 200, timeout: 2 }] });
    const { outcome, phases } = await session(t, req);
    expect(outcome).toEqual({ status: "activated", generation: 5, previous: OLD });
    expect(t.preflights).toBe(1);
    expect(t.activateArgs).toEqual([
      "activate",
      "--path",
      PATH,
      "--action",
      "switch",
      "--substituter",
      "http://cache",
      "--trusted-key",
      "cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I=",
      "--health-timeout",
      "7",
      "--health-cmd",
      "true",
      "--health-timeout",
      "7",
      "--activation-timeout",
      "120",
      "--confirm-timeout",
      "30",
      "--token",
      "tok",
    ]);
    expect(t.calls[0]?.options.timeoutSeconds).toBe(activateDeadline(req));
    expect(t.followUps).toEqual(["confirm --token tok (fresh)"]);
    expect(phases).toEqual(["connect", "health", "confirm", "done"]);
  });

  it("test: the same steps as switch", async () => {
    const t = new FakeTransport({ confirm: ok(settled("confirm", "confirmed", 0)) });
    const req = request({
      action: "test",
      httpChecks: [{ url: `${base}/ok`, expectStatus: 200, timeout: 2 }],
    });
    expect((await session(t, req)).outcome.status).toBe("activated");
    expect(flag(t.activateArgs, "--action")).toBe("test");
    expect(t.followUps).toEqual(["confirm --token tok (fresh)"]);
  });

  for (const action of ["boot", "dry-activate"] as const) {
    it(`${action}: no window, no HTTP checks (a failing one is never run), nothing after activate`, async () => {
      const t = new FakeTransport({});
      const req = request({
        action,
        httpChecks: [{ url: `${base}/fail`, expectStatus: 200, timeout: 2 }],
      });
      const { outcome, phases } = await session(t, req);
      expect(outcome).toEqual({ status: "activated", generation: 5, previous: OLD });
      expect(flag(t.activateArgs, "--confirm-timeout")).toBeUndefined();
      expect(t.followUps).toEqual([]);
      expect(phases).toEqual(["connect", "done"]);
    });
  }

  it("switch without HTTP checks or window: activate alone", async () => {
    const t = new FakeTransport({});
    const { outcome } = await session(t, request({ confirmTimeout: 0 }));
    expect(outcome.status).toBe("activated");
    expect(flag(t.activateArgs, "--confirm-timeout")).toBeUndefined();
    expect(t.followUps).toEqual([]);
  });

  it("turns the script's phase markers into phases, and passes its other lines on without the prefix", async () => {
    const t = new FakeTransport({
      activate: (_args, o) => {
        o.onLog?.("activate: @phase realise");
        o.onLog?.("activate: realising /nix/store/x from http://cache");
        o.onLog?.("activate: @phase switch");
        o.onLog?.("activate: switch-to-configuration switch (/nix/store/x)");
        // A phase a newer script knows and this nixship does not: neither a phase nor a line.
        o.onLog?.("activate: @phase measure");
        // Prose that merely mentions a phase moves nothing.
        o.onLog?.("activate: not rolling back anything");
        return ok(activated("switch"));
      },
    });
    const { phases, logs } = await session(t, request({ confirmTimeout: 0 }));
    expect(phases).toEqual(["connect", "realise", "switch", "done"]);
    expect(logs).toEqual([
      "realising /nix/store/x from http://cache",
      "switch-to-configuration switch (/nix/store/x)",
      "not rolling back anything",
    ]);
  });
});

describe("runActivationSession, each failure", () => {
  const failure = (
    phase: "realise" | "switch" | "health",
    result: "failed" | "timed-out",
    exitCode: number,
    rolledBack: boolean,
  ): ScriptRun =>
    code(exitCode, {
      ok: false,
      command: "activate",
      result,
      phase,
      exitCode,
      message: `${phase} went wrong`,
      rolledBack,
      previous: OLD,
      generation: 4,
    });

  it("a host that cannot take a new connection is failed before anything runs", async () => {
    const t = new FakeTransport({ preflight: "web1: no new ssh connection can be made" });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "failed",
      phase: "connect",
      message: "web1: no new ssh connection can be made",
      rolledBack: false,
    });
    expect(t.calls).toEqual([]);
  });

  it("realise, switch and command-check failures are reported as the script says", async () => {
    for (const [phase, exit, back] of [
      ["realise", 3, false],
      ["switch", 4, true],
      ["health", 5, true],
    ] as const) {
      const t = new FakeTransport({ activate: () => failure(phase, "failed", exit, back) });
      const { outcome } = await session(t, request());
      expect(outcome).toEqual({
        status: "failed",
        phase,
        message: `${phase} went wrong`,
        rolledBack: back,
      });
      expect(t.followUps).toEqual([]);
    }
  });

  it("a realise that failed after Nix passed over an unsigned substitute names the mend", async () => {
    for (const warning of [
      // Nix 2.8's words, then 2.26's.
      "warning: the substitute for '/nix/store/x' from 'http://cache' is not signed by any of the keys in 'trusted-public-keys'",
      "warning: ignoring substitute for '/nix/store/x' from 'http://cache', as it's not signed by any of the keys in 'trusted-public-keys'",
    ]) {
      const t = new FakeTransport({
        activate: (_args, o) => {
          o.onLog?.(warning);
          return failure("realise", "failed", 3, false);
        },
      });
      const { outcome } = await session(t, request());
      expect(outcome).toEqual({
        status: "failed",
        phase: "realise",
        message:
          "realise went wrong; the cache holds a path that no key the host trusts signed (pushed with another key?): 'nixship verify' names it, and 'nixship push PATH --fleet FILE --key KEY --resign' adds the fleet's key to what the cache holds",
        rolledBack: false,
      });
    }
  });

  it("a timed-out switch is a switch failure, as the script reports it", async () => {
    const t = new FakeTransport({ activate: () => failure("switch", "timed-out", 10, true) });
    const { outcome } = await session(t, request({ activationTimeout: 42 }));
    expect(outcome).toEqual({
      status: "failed",
      phase: "switch",
      message: "switch went wrong",
      rolledBack: true,
      timedOutOnHost: true,
    });
    expect(t.followUps).toEqual([]);
  });

  it("a host whose lock another activation holds is refused, nothing done, with the script's message", async () => {
    const t = new FakeTransport({
      activate: () =>
        code(8, {
          ok: false,
          command: "activate",
          result: "locked",
          exitCode: 8,
          message: "another activation is in progress on this host (activate /nix/store/x)",
        }),
    });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "skipped",
      reason: "refused",
      message:
        "another activation is in progress on this host (activate /nix/store/x); nothing was done",
    });
  });

  it("no answer to activate: aborts over a fresh connection, and says the host went back", async () => {
    const t = new FakeTransport({
      activate: () => silent("no answer within 180s"),
      abort: ok(settled("abort", "rolled-back", 0)),
    });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "failed",
      phase: "switch",
      message: "no answer within 180s; aborted: back on the previous system",
      rolledBack: true,
    });
    expect(t.followUps).toEqual(["abort --token tok (fresh)"]);
  });

  it("no answer and no activation under that token: nothing to undo", async () => {
    const t = new FakeTransport({
      activate: () => silent("ssh: Connection refused"),
      abort: code(9, settled("abort", "unknown-token", 9)),
    });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "failed",
      phase: "connect",
      message: "ssh: Connection refused",
      rolledBack: false,
    });
  });

  it("no answer, but the host ran to its end with no window: activated, not taken for one that never began", async () => {
    // The switch restarted the network: ssh died, the script finished on its own.
    const t = new FakeTransport({
      activate: () => silent("ssh: connection closed by remote host"),
      abort: code(
        6,
        settled(
          "abort",
          "activated",
          6,
          undefined,
          `the activation had ended, activated, before it was asked: the host runs ${PATH}`,
        ),
      ),
    });
    const { outcome, logs } = await session(t, request({ confirmTimeout: 0 }));
    expect(outcome).toEqual({ status: "activated", generation: 4, previous: undefined });
    expect(t.followUps).toEqual(["abort --token tok (fresh)"]);
    expect(logs).toContain(
      `ssh: connection closed by remote host; asked after, the host says: the activation had ended, activated, before it was asked: the host runs ${PATH}`,
    );
  });

  it("exit 0 and no answer, and nothing began: activates once more, and the host activates", async () => {
    // What bench:fleet met at load 25-33: ssh ended well, yet the host's shell ran no script.
    let attempts = 0;
    const t = new FakeTransport({
      activate: (args) => {
        attempts++;
        return attempts === 1
          ? { code: 0, result: undefined, failure: "ssh exited with 0 and no result" }
          : ok(activated("switch", flag(args, "--token")));
      },
      abort: code(9, settled("abort", "unknown-token", 9)),
      confirm: ok(settled("confirm", "confirmed", 0)),
    });
    const { outcome, logs } = await session(t, request());
    expect(outcome).toMatchObject({ status: "activated", generation: 5 });
    expect(attempts).toBe(2);
    // The probe leaves the token usable for the second attempt.
    expect(t.followUps).toEqual([
      "abort --token tok --keep-token (fresh)",
      "confirm --token tok (fresh)",
    ]);
    expect(logs).toContain(
      "ssh exited with 0 and no result, and nothing began on the host: activating it once more",
    );
    // The second attempt has what is left of the activation's deadline, no more.
    const [first, second] = t.calls.filter((c) => c.kind === "activate");
    expect(second?.options.timeoutSeconds).toBeLessThanOrEqual(first?.options.timeoutSeconds ?? 0);
  });

  it("exit 0 and no answer twice: activates once more only, then fails as before", async () => {
    const t = new FakeTransport({
      activate: () => ({ code: 0, result: undefined, failure: "ssh exited with 0 and no result" }),
      abort: code(9, settled("abort", "unknown-token", 9)),
    });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "failed",
      phase: "connect",
      message: "ssh exited with 0 and no result",
      rolledBack: false,
    });
    expect(t.calls.filter((c) => c.kind === "activate")).toHaveLength(2);
    // The probe leaves the token usable; the last abort cancels it.
    expect(t.followUps).toEqual([
      "abort --token tok --keep-token (fresh)",
      "abort --token tok (fresh)",
    ]);
  });

  it("exit 0 and no answer, but the abort stopped an activation: no second attempt", async () => {
    const t = new FakeTransport({
      activate: () => ({ code: 0, result: undefined, failure: "ssh exited with 0 and no result" }),
      abort: ok(settled("abort", "rolled-back", 0)),
    });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "failed",
      phase: "switch",
      message: "ssh exited with 0 and no result; aborted: back on the previous system",
      rolledBack: true,
    });
    expect(t.calls.filter((c) => c.kind === "activate")).toHaveLength(1);
    expect(t.followUps).toEqual(["abort --token tok --keep-token (fresh)"]);
  });

  it("no answer and the abort cannot reach the host: says how the host ends by itself, and leaves it settling", async () => {
    const t = new FakeTransport({
      activate: () => silent("ssh: Connection reset"),
      abort: silent("ssh: Connection refused"),
    });
    const { outcome } = await session(t, request({ httpChecks: [] }));
    // Not switched yet as far as the deployer saw: its activation timeout ends it first.
    expect(outcome).toEqual({
      status: "failed",
      phase: "switch",
      rolledBack: false,
      settling: true,
      message:
        "ssh: Connection reset; could not abort (ssh: Connection refused); activate.sh stops it within its 120s activation timeout and goes back (once switched, the host rolls itself back when its 30s confirmation window closes unconfirmed)",
    });
    // In its checks, awaiting its deploy's word: its confirmation window ends it.
    const checking = new FakeTransport({
      activate: (_args, o) => {
        o.onLog?.("activate: @phase switch");
        o.onLog?.("activate: @phase health");
        return silent("ssh: Connection reset");
      },
      abort: silent("ssh: Connection refused"),
    });
    const inChecks = await session(checking, request({ httpChecks: [] }));
    expect(inChecks.outcome).toMatchObject({
      settling: true,
      message:
        "ssh: Connection reset; could not abort (ssh: Connection refused); the host rolls itself back when its 30s confirmation window closes",
    });
  });

  it("a failed HTTP check aborts the window over a fresh connection", async () => {
    const t = new FakeTransport({ abort: ok(settled("abort", "rolled-back", 0)) });
    const req = request({ httpChecks: [{ url: `${base}/fail`, expectStatus: 200, timeout: 1 }] });
    const { outcome, phases } = await session(t, req);
    expect(outcome).toMatchObject({ status: "failed", phase: "health", rolledBack: true });
    expect((outcome as { message: string }).message).toContain("expected status 200");
    expect(t.followUps).toEqual(["abort --token tok (fresh)"]);
    expect(phases.slice(-2)).toEqual(["health", "rollback"]);
  });

  it("a failed HTTP check whose abort fails says the window rolls the host back", async () => {
    const t = new FakeTransport({ abort: silent("ssh: Connection refused") });
    const req = request({ httpChecks: [{ url: `${base}/fail`, expectStatus: 200, timeout: 1 }] });
    const { outcome } = await session(t, req);
    expect(outcome).toMatchObject({
      status: "failed",
      rolledBack: false,
      message: expect.stringContaining(
        "rolling back failed: ssh: Connection refused; the host rolls itself back when its 30s confirmation window closes",
      ),
    });
  });

  it("without a window (ssm), a failed HTTP check rolls back to the generation left", async () => {
    const t = new FakeTransport(
      {
        rollback: ok(ROLLED_BACK),
      },
      false,
    );
    const req = request({ httpChecks: [{ url: `${base}/fail`, expectStatus: 200, timeout: 1 }] });
    const { outcome } = await session(t, req);
    expect(outcome).toMatchObject({ status: "failed", phase: "health", rolledBack: true });
    expect(flag(t.activateArgs, "--confirm-timeout")).toBeUndefined();
    expect(t.followUps).toEqual(["rollback --to 4 --activation-timeout 120"]);
  });

  it("without a window (ssm), interrupted once it activated: it goes back, as the interrupt said", async () => {
    const controller = new AbortController();
    const t = new FakeTransport(
      {
        activate: () => {
          controller.abort("SIGINT");
          return ok(activated("switch"));
        },
        rollback: ok(ROLLED_BACK),
      },
      false,
    );
    const { outcome } = await session(t, request(), controller.signal);
    expect(outcome).toEqual({
      status: "failed",
      phase: "health",
      message: "interrupted (SIGINT)",
      rolledBack: true,
    });
    expect(t.followUps).toEqual(["rollback --to 4 --activation-timeout 120"]);
  });

  it("a confirmation that came too late is a failure, rolled back by the host", async () => {
    const t = new FakeTransport({ confirm: code(6, settled("confirm", "rolled-back", 6)) });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "failed",
      phase: "confirm",
      message: "confirmation failed: confirm: rolled-back",
      rolledBack: true,
    });
  });

  it("a confirmation that cannot reach the host says the window rolls it back", async () => {
    const t = new FakeTransport({ confirm: silent("ssh: Connection refused") });
    const { outcome } = await session(t, request());
    expect(outcome).toEqual({
      status: "failed",
      phase: "confirm",
      message:
        "confirmation failed: ssh: Connection refused; the host rolls itself back when its 30s confirmation window closes",
      rolledBack: false,
    });
  });
});

describe("runActivationSession, interrupted", () => {
  it("before it starts: runs nothing, and says the reason once", async () => {
    const t = new FakeTransport({});
    const controller = new AbortController();
    controller.abort("interrupted (SIGINT)");
    const { outcome } = await session(t, request(), controller.signal);
    expect(outcome).toMatchObject({
      status: "failed",
      phase: "connect",
      message: "interrupted (SIGINT) before it started",
    });
    expect(t.calls).toEqual([]);
  });

  it("during activate: the transport stops waiting, and the activation is aborted afresh", async () => {
    const controller = new AbortController();
    const t = new FakeTransport({
      activate: (_args, o) => {
        expect(o.signal).toBe(controller.signal);
        controller.abort("SIGINT");
        return silent("interrupted");
      },
      abort: ok(settled("abort", "rolled-back", 0)),
    });
    const { outcome } = await session(t, request(), controller.signal);
    expect(outcome).toEqual({
      status: "failed",
      phase: "switch",
      message: "interrupted (SIGINT); aborted: back on the previous system",
      rolledBack: true,
    });
    expect(t.followUps).toEqual(["abort --token tok (fresh)"]);
    // The abort itself is not interrupted: it must get through.
    expect(t.calls[1]?.options.signal).toBeUndefined();
  });

  it("during activate: the failure names the phase the host's lock says it stopped in", async () => {
    for (const stoppedIn of ["realise", "secrets", "profile", "switch", "health"] as const) {
      const controller = new AbortController();
      const t = new FakeTransport({
        activate: () => {
          controller.abort("SIGINT");
          return silent("interrupted");
        },
        abort: ok(settled("abort", "rolled-back", 0, stoppedIn)),
      });
      const { outcome } = await session(t, request(), controller.signal);
      expect(outcome).toEqual({
        status: "failed",
        phase: stoppedIn,
        message:
          stoppedIn === "realise" || stoppedIn === "secrets"
            ? `interrupted (SIGINT); stopped in its ${stoppedIn} phase, before any switch`
            : "interrupted (SIGINT); aborted: back on the previous system",
        rolledBack: true,
      });
    }
  });

  it("during activate, its lock naming no phase it ran: the last phase the host said it entered", async () => {
    const controller = new AbortController();
    const t = new FakeTransport({
      activate: (_args, o) => {
        o.onLog?.("activate: @phase switch");
        o.onLog?.("activate: @phase health");
        o.onLog?.("activate: @phase rollback");
        controller.abort("SIGINT");
        return silent("interrupted");
      },
      abort: ok(settled("abort", "rolled-back", 0, "rollback", "check failed")),
    });
    const { outcome } = await session(t, request(), controller.signal);
    expect(outcome).toEqual({
      status: "failed",
      phase: "health",
      message:
        "interrupted (SIGINT); it had failed already (check failed): back on the previous system",
      rolledBack: true,
    });
  });

  it("during the HTTP checks: aborts the window instead of confirming", async () => {
    const controller = new AbortController();
    const t = new FakeTransport({
      activate: (args) => {
        setTimeout(() => controller.abort("SIGTERM"), 50);
        return ok(activated("switch", flag(args, "--token")));
      },
      abort: ok(settled("abort", "rolled-back", 0)),
    });
    // A check that would wait 5 s for a 200 it never gets; the interrupt ends it at once.
    const req = request({ httpChecks: [{ url: `${base}/fail`, expectStatus: 200, timeout: 5 }] });
    const { outcome } = await session(t, req, controller.signal);
    expect(outcome).toEqual({
      status: "failed",
      phase: "health",
      message: "interrupted (SIGTERM)",
      rolledBack: true,
    });
    expect(t.followUps).toEqual(["abort --token tok (fresh)"]);
  });

  it("after the checks, before confirming: aborts", async () => {
    const controller = new AbortController();
    const t = new FakeTransport({
      activate: (args) => {
        controller.abort("SIGINT");
        return ok(activated("switch", flag(args, "--token")));
      },
      abort: ok(settled("abort", "rolled-back", 0)),
    });
    const { outcome } = await session(t, request(), controller.signal);
    expect(outcome).toMatchObject({ status: "failed", phase: "confirm", rolledBack: true });
    expect(t.followUps).toEqual(["abort --token tok (fresh)"]);
  });
});

describe("buildDeployRequest", () => {
  const parts = (action: Action) => ({
    path: "/nix/store/00000000000000000000000000000000-system" as StorePath,
    action,
    substituters: [],
    trustedKeys: [],
    checks: { health: { http: [], commands: [] }, confirmTimeout: 0 },
    host: { name: "web1", address: "10.0.0.1" },
    activationTimeout: 60,
    secrets: { bundle: "nixship-secrets 1\n", digest: "d".repeat(64), age: undefined },
  });

  it("gives a dry-activate no secrets, every other action the host's", () => {
    for (const action of ACTIONS) {
      const request = buildDeployRequest(parts(action));
      if (action === "dry-activate") expect(request.secrets, action).toBeUndefined();
      else expect(request.secrets, action).toEqual(parts(action).secrets);
    }
  });
});
