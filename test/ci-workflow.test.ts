// examples/ci/github-actions.yml: it parses (a strict YAML subset reader, see
// support/yaml-subset.ts), has the jobs and triggers of its flow (plan on pull requests; build,
// push and deploy on pushes to main and by hand; rollback by hand) with OIDC credentials, and
// its jobs' conditions, evaluated as GitHub does (support/gh-expr.ts), run exactly those jobs
// for each event: a pull request never builds for the cache, deploys or holds a key. Its shell
// passes shellcheck and calls only nixship commands and flags that exist, and its steps, run
// here as GitHub runs them (bash -eo pipefail, the same environment variables), do their work
// against a directory cache: build, push, plan, fetch, deploy through the agents, status,
// rollback, and the job summaries made from their --json output.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, NIXSHIP_BIN, nixship, run } from "../support/cli.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import {
  callsStatusFunction,
  conditionText,
  evaluateExpression,
  type GhObject,
  type GhValue,
  interpolate,
  truthy,
} from "./support/gh-expr.js";
import { parseYamlSubset, type YamlValue } from "./support/yaml-subset.js";

const WORKFLOW = fileURLToPath(new URL("../examples/ci/github-actions.yml", import.meta.url));

interface Step {
  readonly name?: string;
  readonly id?: string;
  readonly uses?: string;
  readonly run?: string;
  readonly if?: string;
  readonly with?: Record<string, YamlValue>;
  readonly env?: Record<string, string>;
}
interface Job {
  readonly if?: string;
  readonly environment?: string;
  readonly needs?: string | string[];
  readonly outputs?: Record<string, string>;
  readonly steps: Step[];
}
interface Workflow {
  readonly on: {
    pull_request: { branches: string[] };
    push: { branches: string[] };
    workflow_dispatch: { inputs: Record<string, { options?: string[]; default?: string }> };
  };
  readonly permissions: Record<string, string>;
  readonly concurrency: { group: string; "cancel-in-progress": string };
  readonly env: Record<string, string>;
  readonly defaults: { run: { shell: string } };
  readonly jobs: Record<string, Job>;
}

const REPOSITORY = "example-org/fleet";
/** The repository's variables, as the workflow's header asks for them. */
const VARS: GhObject = {
  NIXSHIP_AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/nixship-github-actions",
  NIXSHIP_AWS_PLAN_ROLE_ARN: "arn:aws:iam::123456789012:role/nixship-github-actions-plan",
  AWS_REGION: "eu-west-1",
};

/** The contexts GitHub gives an event's run (vars and secrets as the repository has them). */
function eventContext(
  event: "pull_request" | "push" | "workflow_dispatch",
  inputs: GhObject = {},
  vars: GhObject = VARS,
  headRepository = REPOSITORY,
): GhObject {
  const github: GhObject =
    event === "pull_request"
      ? {
          event_name: event,
          repository: REPOSITORY,
          ref: "refs/pull/7/merge",
          event: { pull_request: { number: 7, head: { repo: { full_name: headRepository } } } },
        }
      : { event_name: event, repository: REPOSITORY, ref: "refs/heads/main", event: {} };
  return { github, inputs, vars, secrets: {} };
}

/** The workflow-level env as GitHub evaluates it for a run. */
function workflowEnv(w: Workflow, context: GhObject): Record<string, string> {
  return Object.fromEntries(
    Object.entries(w.env).map(([k, v]) => [k, String(interpolate(String(v), context))]),
  );
}

const needsOf = (job: Job): string[] =>
  job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs];

/**
 * The jobs of a run, as GitHub picks them: a job runs when its `if` holds, where `if` implies
 * success() (every job it needs ran and succeeded) unless it calls a status function itself.
 */
function jobsThatRun(w: Workflow, context: GhObject): string[] {
  const ran = new Set<string>();
  const decided = new Set<string>();
  const decide = (name: string): void => {
    if (decided.has(name)) return;
    const job = w.jobs[name] as Job;
    for (const need of needsOf(job)) decide(need);
    const success = needsOf(job).every((n) => ran.has(n));
    const condition = conditionText(String(job.if ?? "success()"));
    const value = evaluateExpression(condition, context, { success });
    const runs = callsStatusFunction(condition) ? truthy(value) : success && truthy(value);
    if (runs) ran.add(name);
    decided.add(name);
  };
  for (const name of Object.keys(w.jobs)) decide(name);
  return Object.keys(w.jobs).filter((n) => ran.has(n));
}

/** The steps of a job that run (all succeeding so far), given the run's contexts and env. */
function stepsThatRun(job: Job, context: GhObject, env: Record<string, string>): Step[] {
  return job.steps.filter((s) => {
    if (s.if === undefined) return true;
    return truthy(evaluateExpression(conditionText(s.if), { ...context, env }));
  });
}

/** What the workflow must never do for a pull request, one line each. */
function pullRequestProblems(w: Workflow): string[] {
  const problems: string[] = [];
  const context = eventContext("pull_request");
  for (const name of jobsThatRun(w, context)) {
    const job = w.jobs[name] as Job;
    const text = JSON.stringify(job);
    if (/\bsecrets\./.test(text)) problems.push(`${name}: reads secrets`);
    if (text.includes("NIXSHIP_AWS_ROLE_ARN")) problems.push(`${name}: assumes the deploy role`);
    for (const s of job.steps) {
      for (const line of (s.run ?? "").replace(/\\\n\s*/g, " ").split("\n")) {
        const call = /^\s*nixship\s+([a-z]+(?:\s+[a-z]+)?)/.exec(line)?.[1];
        if (call !== undefined && call !== "plan") {
          problems.push(`${name}: ${s.name ?? s.uses} runs nixship ${call}`);
        }
      }
    }
  }
  return problems;
}

let workflow: Workflow;

function step(job: string, name: string): Step {
  const found = workflow.jobs[job]?.steps.find((s) => s.name === name);
  if (!found?.run) throw new Error(`job ${job} has no run step "${name}"`);
  return found;
}

const allSteps = () =>
  Object.entries(workflow.jobs).flatMap(([job, j]) => j.steps.map((s) => ({ job, step: s })));

beforeAll(async () => {
  workflow = parseYamlSubset(await readFile(WORKFLOW, "utf8")) as unknown as Workflow;
});

describe("the workflow's shape", () => {
  it("plans on pull requests, runs on pushes to main and by hand, with deploy or rollback, via ssm or agent", () => {
    expect(workflow.on.pull_request.branches).toEqual(["main"]);
    expect(workflow.on.push.branches).toEqual(["main"]);
    const inputs = workflow.on.workflow_dispatch.inputs;
    expect(inputs.action?.options).toEqual(["deploy", "rollback"]);
    expect(inputs.via?.options).toEqual(["ssm", "agent"]);
    expect(inputs.hosts?.default).toBe("@web");
    expect(workflow.defaults.run.shell).toBe("bash");
    expect(Object.keys(workflow.jobs)).toEqual(["plan", "build", "deploy", "rollback"]);
    expect(workflow.jobs.deploy?.needs).toBe("build");
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a GitHub Actions expression.
    expect(workflow.jobs.build?.outputs?.hosts).toBe("${{ steps.build.outputs.hosts }}");
  });

  it("runs exactly the jobs of each event: a pull request only plans", () => {
    const runs = (event: "pull_request" | "push" | "workflow_dispatch", inputs: GhObject = {}) =>
      jobsThatRun(workflow, eventContext(event, inputs));
    expect(runs("pull_request")).toEqual(["plan"]);
    expect(runs("push")).toEqual(["build", "deploy"]);
    expect(runs("workflow_dispatch", { action: "deploy", via: "agent", hosts: "@web" })).toEqual([
      "build",
      "deploy",
    ]);
    expect(runs("workflow_dispatch", { action: "rollback", via: "ssm", hosts: "web1" })).toEqual([
      "rollback",
    ]);
  });

  it("never deploys, pushes, signs or assumes the deploy role for a pull request", () => {
    expect(pullRequestProblems(workflow)).toEqual([]);
    const plan = workflow.jobs.plan as Job;
    const calls = plan.steps.flatMap((s) =>
      (s.run ?? "").split("\n").filter((l) => l.trim().startsWith("nixship ")),
    );
    expect(calls.map((l) => l.trim())).toEqual(['nixship plan --on "$HOSTS" --json > plan.json']);
  });

  it("keeps the signing keys in the environment the deploy role trusts: every job that reads a secret names it", () => {
    const reading = Object.entries(workflow.jobs).filter(([, job]) =>
      /\bsecrets\./.test(JSON.stringify(job)),
    );
    expect(reading.map(([name]) => name).sort()).toEqual(["build", "deploy", "rollback"]);
    for (const [name, job] of reading)
      expect([name, job.environment]).toEqual([name, "production"]);
    // The plan job (pull requests) names none: it presents its pull request, and reads no secret.
    expect(workflow.jobs.plan?.environment).toBeUndefined();
  });

  it("the pull request check fails on a workflow whose build and deploy also run for pull requests", () => {
    // The conditions of an earlier version of this workflow, which had no pull_request trigger.
    const jobs = { ...workflow.jobs };
    jobs.build = {
      ...(jobs.build as Job),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a GitHub Actions expression.
      if: "${{ github.event_name != 'workflow_dispatch' || inputs.action == 'deploy' }}",
    };
    const { if: _, ...deployWithoutIf } = jobs.deploy as Job;
    jobs.deploy = deployWithoutIf;
    const leaky = { ...workflow, jobs };
    expect(jobsThatRun(leaky, eventContext("pull_request"))).toEqual(["plan", "build", "deploy"]);
    const problems = pullRequestProblems(leaky);
    expect(problems).toEqual(
      expect.arrayContaining([
        "build: reads secrets",
        "build: assumes the deploy role",
        "build: Push to the cache runs nixship push",
        "deploy: Deploy runs nixship deploy",
      ]),
    );
  });

  it("serialises deploys and rollbacks, and keeps pull requests' plans out of their queue", () => {
    const group = (context: GhObject) => interpolate(workflow.concurrency.group, context);
    const cancel = (context: GhObject) =>
      interpolate(workflow.concurrency["cancel-in-progress"], context);
    const pr = eventContext("pull_request");
    const push = eventContext("push");
    const dispatch = eventContext("workflow_dispatch", { action: "rollback" });
    expect(group(push)).toBe("nixship-deploy");
    expect(group(dispatch)).toBe("nixship-deploy");
    expect(cancel(push)).toBe(false);
    expect(cancel(dispatch)).toBe(false);
    expect(group(pr)).toBe("nixship-plan-refs/pull/7/merge");
    expect(cancel(pr)).toBe(true);
  });

  it("gets AWS credentials only through OIDC, in every job that touches AWS, and the deploy role only outside pull requests", () => {
    expect(workflow.permissions).toEqual({ contents: "read", "id-token": "write" });
    const roles: Record<string, GhValue> = {};
    for (const [name, job] of Object.entries(workflow.jobs)) {
      const aws = job.steps.filter((s) =>
        s.uses?.startsWith("aws-actions/configure-aws-credentials@"),
      );
      expect(aws, name).toHaveLength(1);
      expect(Object.keys(aws[0]?.with ?? {}).sort(), name).toEqual([
        "aws-region",
        "role-to-assume",
      ]);
      roles[name] = interpolate(String(aws[0]?.with?.["role-to-assume"]), eventContext("push"));
    }
    expect(roles).toEqual({
      plan: VARS.NIXSHIP_AWS_PLAN_ROLE_ARN,
      build: VARS.NIXSHIP_AWS_ROLE_ARN,
      deploy: VARS.NIXSHIP_AWS_ROLE_ARN,
      rollback: VARS.NIXSHIP_AWS_ROLE_ARN,
    });
    // The plan role is assumed only for pull requests from this repository, when it is set.
    const step = (workflow.jobs.plan as Job).steps.find((s) =>
      s.uses?.startsWith("aws-actions/configure-aws-credentials@"),
    ) as Step;
    const assumes = (context: GhObject) =>
      truthy(evaluateExpression(conditionText(String(step.if)), context));
    expect(assumes(eventContext("pull_request"))).toBe(true);
    expect(assumes(eventContext("pull_request", {}, VARS, "someone/fleet"))).toBe(false);
    expect(
      assumes(eventContext("pull_request", {}, { ...VARS, NIXSHIP_AWS_PLAN_ROLE_ARN: "" })),
    ).toBe(false);
  });

  it("deploys via agent with `nixship deploy --via agent`, never by publishing a release", () => {
    const context = eventContext("workflow_dispatch", {
      action: "deploy",
      via: "agent",
      hosts: "@web",
    });
    const env = workflowEnv(workflow, context);
    expect(env).toMatchObject({ VIA: "agent", HOSTS: "@web", NIXSHIP_FLEET: "nixship.agent.json" });
    const steps = stepsThatRun(workflow.jobs.deploy as Job, context, env);
    const calls = steps.flatMap((s) =>
      (s.run ?? "").split("\n").filter((l) => l.trim().startsWith("nixship ")),
    );
    expect(calls.map((l) => l.trim().split(" ").slice(0, 6).join(" "))).toEqual([
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash array, quoted.
      'nixship fetch "$path" --from "$cache" "${trusted[@]}"',
      'nixship deploy --on "$HOSTS" --via "$VIA"',
      'nixship status --on "$HOSTS" --json >',
    ]);
    for (const { step: s } of allSteps()) expect(s.run ?? "").not.toContain("release publish");
    // Pushes take the repository's mode, else ssm.
    expect(workflowEnv(workflow, eventContext("push")).VIA).toBe("ssm");
    expect(
      workflowEnv(workflow, eventContext("push", {}, { ...VARS, NIXSHIP_VIA: "agent" })),
    ).toMatchObject({
      VIA: "agent",
      NIXSHIP_FLEET: "nixship.agent.json",
    });
  });

  it("has steps that each either use a versioned action or run a script", () => {
    for (const { job, step: s } of allSteps()) {
      expect(
        [s.uses, s.run].filter((x) => x !== undefined),
        `${job}: ${s.name}`,
      ).toHaveLength(1);
      if (s.uses) expect(s.uses).toMatch(/^[\w-]+\/[\w-]+@v\d+$/);
    }
  });

  it("keeps expressions out of scripts (inputs reach them as environment variables)", () => {
    for (const { step: s } of allSteps()) expect(s.run ?? "").not.toContain("${{");
  });

  it("prints every nixship result as --json into the job summary", () => {
    const scripts = allSteps().map((x) => x.step.run ?? "");
    for (const command of [
      "nixship build",
      "nixship push",
      "nixship plan",
      "nixship deploy",
      "nixship status",
      "nixship rollback",
    ]) {
      const line = scripts
        .join("\n")
        .split("\n")
        .find((l) => l.trimStart().startsWith(command));
      expect(line, command).toBeDefined();
      const whole = scripts.find((s) => s.includes(command)) as string;
      expect(whole.replace(/\\\n\s*/g, " "), command).toMatch(
        new RegExp(`${command}[^\\n]*--json`),
      );
    }
    expect(scripts.join("\n")).toContain('nixship deploy --on "$HOSTS" --via "$VIA"');
    for (const job of ["plan", "build", "deploy", "rollback"]) {
      const summaries = workflow.jobs[job]?.steps.filter((s) =>
        s.run?.includes("$GITHUB_STEP_SUMMARY"),
      );
      expect(summaries?.length, job).toBeGreaterThan(0);
      for (const s of summaries ?? []) expect(s.if, s.name).toMatch(/always\(\)/);
    }
  });
});

describe("the expression evaluator the shape tests rely on", () => {
  it("follows GitHub's rules for values, comparison and the status functions", () => {
    const context: GhObject = { inputs: { via: "" }, vars: { MODE: "agent" }, n: 2 };
    expect(evaluateExpression("inputs.via || vars.MODE || 'ssm'", context)).toBe("agent");
    expect(evaluateExpression("inputs.via && 'x'", context)).toBe("");
    expect(evaluateExpression("vars.mode == 'AGENT'", context)).toBe(true);
    expect(evaluateExpression("inputs.missing == null && !inputs.missing", context)).toBe(true);
    expect(evaluateExpression("n >= 2 && format('a-{0}-{1}', n, 'b') == 'a-2-b'", context)).toBe(
      true,
    );
    expect(evaluateExpression("success()", context, { success: false })).toBe(false);
    expect(callsStatusFunction("always() && x")).toBe(true);
    expect(callsStatusFunction("github.event_name == 'always'")).toBe(false);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a GitHub Actions expression.
    expect(interpolate("nixship.${{ vars.MODE }}.json", context)).toBe("nixship.agent.json");
    expect(() => evaluateExpression("hashFiles('x')", context)).toThrow(/unsupported function/);
    expect(() => evaluateExpression("nope.x", context)).toThrow(/unknown context/);
    expect(() => evaluateExpression("a ==", { a: 1 })).toThrow(/ends too early/);
  });
});

describe("the workflow's shell", () => {
  it("passes shellcheck", async () => {
    for (const { job, step: s } of allSteps()) {
      if (!s.run) continue;
      // SC2016 (no expansion in single quotes) is the point of `node -e '...'`: the program
      // holds JavaScript template literals, not shell expansions.
      const args = ["--shell=bash", "--severity=style", "--exclude=SC2016", "-"];
      const r = await run("shellcheck", args, {
        input: Buffer.from(s.run),
      });
      expect(r.stdout, `${job}: ${s.name}`).toBe("");
      expect(r.code, `${job}: ${s.name}`).toBe(0);
    }
  });

  it("calls only nixship commands and flags that exist", async () => {
    // A call that passes "${args[@]}" passes the flags its script puts into args=(...).
    const calls = allSteps().flatMap((x) => {
      const lines = (x.step.run ?? "").replace(/\\\n\s*/g, " ").split("\n");
      const argFlags = lines
        .filter((l) => /^\s*args\+?=\(/.test(l))
        .flatMap((l) => l.split(/[\s()]+/).filter((w) => w.startsWith("--")));
      return (
        lines
          .map((l) => l.trim())
          .filter((l) => l.startsWith("nixship "))
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash array, quoted.
          .map((l) => (l.includes('"${args[@]}"') ? `${l} ${argFlags.join(" ")}` : l))
      );
    });
    expect(calls.length).toBeGreaterThanOrEqual(7);
    expect(calls.find((c) => c.startsWith("nixship deploy"))).toContain("--release-key");
    for (const call of calls) {
      const words = call.split(/\s+/);
      const command = words.slice(1).filter((w, i) => i < 2 && /^[a-z]+$/.test(w));
      const help = await nixship([...command, "--help"]);
      expect(help.stdout, call).toMatch(new RegExp(`^Usage: nixship ${command.join(" ")} `));
      for (const flag of words.filter((w) => w.startsWith("--"))) {
        expect(help.stdout, `${call}: ${flag}`).toContain(flag);
      }
    }
  });
});

describe("the workflow's steps, run as GitHub runs them", () => {
  let work: string;
  let env: Record<string, string>;
  let summary: string;
  let output: string;

  /** Runs a step's script as GitHub's `shell: bash` does, in the checkout. */
  async function runStep(job: string, name: string, extra: Record<string, string> = {}) {
    const s = step(job, name);
    const script = join(env.RUNNER_TEMP as string, "step.sh");
    await writeFile(script, s.run as string);
    return run("bash", ["--noprofile", "--norc", "-eo", "pipefail", script], {
      cwd: work,
      env: { ...env, ...extra },
    });
  }

  const ok = (r: CliRun) => expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  const summaryText = () => readFile(summary, "utf8");

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "nixship-ci-workflow-"));
    await run("ln", ["-s", EXAMPLES_DIR, join(work, "examples")]);
    const temp = join(work, ".runner-temp");
    await mkdir(join(temp, "bin"), { recursive: true });
    const wrapper = join(temp, "bin", "nixship");
    await writeFile(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${NIXSHIP_BIN}" "$@"\n`);
    await chmod(wrapper, 0o755);
    const keys = join(work, "keys");
    await mkdir(keys);
    const cachePub = (
      await nixship(["key", "generate", "--name", "wf-cache-1", "--out", join(keys, "c.sec")])
    ).stdout.trim();
    const releasePub = (
      await nixship(["key", "generate", "--name", "wf-release-1", "--out", join(keys, "r.sec")])
    ).stdout.trim();
    await writeFile(
      join(work, "nixship.agent.json"),
      JSON.stringify({
        cache: { url: `file://${work}/cache?fsync=false`, publicKeys: [cachePub] },
        releases: { channel: "production", publicKeys: [releasePub], offlineTimeout: 1 },
        hosts: {
          ag1: { tags: ["web"], delivery: "agent", system: "path:./examples#web-v1" },
          ag2: { tags: ["web"], delivery: "agent", system: "path:./examples#web-v2" },
          db1: { tags: ["db"], delivery: "agent", system: "path:./examples#web-v3" },
        },
      }),
    );
    summary = join(work, "summary.md");
    output = join(work, "output.txt");
    env = {
      PATH: `${join(temp, "bin")}:${process.env.PATH}`,
      RUNNER_TEMP: temp,
      GITHUB_WORKSPACE: work,
      GITHUB_OUTPUT: output,
      GITHUB_STEP_SUMMARY: summary,
      // The workflow's env, as GitHub evaluates it for via=agent, hosts=@web.
      VIA: "agent",
      HOSTS: "@web",
      NIXSHIP_FLEET: "nixship.agent.json",
      CACHE_SIGNING_KEY: (await readFile(join(keys, "c.sec"), "utf8")).trim(),
      RELEASE_SIGNING_KEY: (await readFile(join(keys, "r.sec"), "utf8")).trim(),
    };
  });
  afterAll(() => rm(work, { recursive: true, force: true }));

  it("build: builds the selected hosts' systems, sets the job output, and summarises", async () => {
    ok(await runStep("build", "Build"));
    const line = (await readFile(output, "utf8")).trim();
    expect(line).toMatch(/^hosts=\{"ag1":"\/nix\/store\/[^"]+","ag2":"\/nix\/store\/[^"]+"\}$/);
    ok(await runStep("build", "Summary: build"));
    const text = await summaryText();
    expect(text).toContain("### Built systems");
    expect(text).toMatch(
      /\| path:\.\/examples#web-v1 \| `\/nix\/store\/\S+-example-web-system-v1` \| ag1 \|/,
    );
    expect(text).not.toContain("db1");
  });

  it("build: pushes the systems signed into the fleet's cache, and summarises", async () => {
    ok(await runStep("build", "Push to the cache"));
    ok(await runStep("build", "Summary: push"));
    expect(await summaryText()).toMatch(
      // web-v1 and web-v2: a toplevel and an etc each, and the share and the kernel they share.
      new RegExp(`### Pushed to file://${work}/cache\\n\\n6 of 6 paths uploaded`),
    );
    const pub = (await nixship(["key", "public", join(work, "keys", "c.sec")])).stdout.trim();
    const verified = await nixship([
      "verify",
      "--cache",
      `file://${work}/cache`,
      "--trusted-key",
      pub,
      "--json",
    ]);
    expect(JSON.parse(verified.stdout)).toMatchObject({ checked: 6, ok: 6, problems: [] });
  });

  /** The channel's releases in the workflow's cache: [seq, kind, hosts]. */
  async function releases(): Promise<[number, string, number][]> {
    const listed = await nixship([
      "release",
      "list",
      "--channel",
      "production",
      "--store",
      `file://${work}/cache`,
      "--json",
    ]);
    ok(listed);
    const parsed = JSON.parse(listed.stdout) as {
      releases: { seq: number; kind: string; hosts: number }[];
    };
    return parsed.releases.map((r) => [r.seq, r.kind, r.hosts]);
  }

  it("plan: plans the selected hosts, changing nothing, and summarises", async () => {
    ok(await runStep("plan", "Plan"));
    const plan = JSON.parse(await readFile(join(work, "plan.json"), "utf8")) as {
      hosts: { host: string; action: string }[];
    };
    expect(plan.hosts.map((h) => [h.host, h.action])).toEqual([
      ["ag1", "activate"],
      ["ag2", "activate"],
    ]);
    ok(await runStep("plan", "Summary: plan"));
    const text = await summaryText();
    expect(text).toContain("### Plan: 2 to activate, 0 up to date, 0 not reached");
    expect(text).toMatch(
      /\| ag1 \| activate \| {2}\| `\/nix\/store\/\S+-example-web-system-v1` \| 4 paths, 0\.0 MB \| {2}\|/,
    );
    // No release was published and no host was asked to change.
    expect(await releases()).toEqual([]);
  });

  it("deploy: fetches the built systems, deploys through the agents canary first, and summarises", async () => {
    const hosts = (await readFile(output, "utf8")).trim().replace(/^hosts=/, "");
    ok(await runStep("deploy", "Fetch the built systems from the cache", { BUILT_HOSTS: hosts }));
    // The agents never report here: the canary fails after releases.offlineTimeout, and no
    // further wave starts.
    expect((await runStep("deploy", "Deploy")).code).toBe(1);
    const events = (await readFile(join(work, "deploy.ndjson"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; [k: string]: unknown });
    expect(events.filter((e) => e.type === "wave-start")).toEqual([
      expect.objectContaining({ wave: 1, kind: "canary", hosts: ["ag1"] }),
    ]);
    expect(events.find((e) => e.type === "stopped")).toMatchObject({
      reason: "the canary failed",
      notStarted: ["ag2"],
    });
    // The canary's wave was a signed release of the channel, withdrawn when it failed by a
    // rollback naming no host (nobody had an earlier entry).
    expect(await releases()).toEqual([
      [1, "deploy", expect.any(Number)],
      [2, "rollback", 0],
    ]);
    ok(await runStep("deploy", "Summary: deploy"));
    let text = await summaryText();
    expect(text).toMatch(
      /### Deploy FAILED in \d+\.\d s\n\nStopped: the canary failed\n\n\| host \| outcome \| detail \| seconds \|\n\|---\|---\|---\|---\|\n\| ag1 \| failed \| no report from the agent within 1s[^|]*\| \d+\.\d \|\n\| ag2 \| skipped \| not-started \| 0\.0 \|/,
    );
    expect((await runStep("deploy", "Status of the hosts")).code).toBe(1);
    ok(await runStep("deploy", "Summary: status"));
    text = await summaryText();
    expect(text).toContain("| ag1 | agent | never reported |  |  |");
    expect(text).toContain("| ag2 | agent | never reported |  |  |");
  });

  it("deploy: summarises an SSM deploy's --json events", async () => {
    // What `nixship deploy --json` prints when a host fails (an ssh host whose port refuses;
    // the events are those of every mode).
    await writeFile(join(work, "ssh_config"), "Host dead\n  HostName 127.0.0.1\n  Port 1\n");
    await writeFile(join(work, "known_hosts"), "");
    await writeFile(
      join(work, "dead.json"),
      JSON.stringify({
        ssh: { configFile: "./ssh_config", knownHosts: "./known_hosts" },
        hosts: { dead: { sshHost: "dead", system: "path:./examples#web-v1" } },
      }),
    );
    const deployed = await nixship(["deploy", "--fleet", join(work, "dead.json"), "--json"]);
    expect(deployed.code).toBe(1);
    await writeFile(join(work, "deploy.ndjson"), deployed.stdout);
    ok(await runStep("deploy", "Summary: deploy", { VIA: "ssm" }));
    expect(await summaryText()).toMatch(
      /### Deploy FAILED in \d+\.\d s\n\n\| host \| outcome \| detail \| seconds \|\n\|---\|---\|---\|---\|\n\| dead \| failed \| ssh: connect to host 127\.0\.0\.1 port 1: Connection refused \| 0\.0 \|/,
    );
  });

  it("rollback: signs a rollback release for agent hosts, fails where there is nothing to go back to, and summarises", async () => {
    const r = await runStep("rollback", "Roll back");
    expect(r.code).toBe(1);
    ok(await runStep("rollback", "Summary: rollback"));
    const text = await summaryText();
    expect(text).toContain("### Rollback\n\n| host | result | system |");
    // The failed canary was withdrawn: the channel names no system for ag1 to go back from.
    expect(text).toContain(
      "| ag1 | failed | release 2 of channel production does not name ag1: it follows no system of this channel yet |",
    );
    // A usage error reaches the summary as the error object.
    const bad = await runStep("rollback", "Roll back", { HOSTS: "@nope" });
    expect(bad.code).toBe(2);
    ok(await runStep("rollback", "Summary: rollback"));
    expect(await summaryText()).toContain(
      '### Rollback failed\n\nbad-selector: selector term "@nope" matches no tag',
    );
  });
});
