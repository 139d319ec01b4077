// examples/ci/github-actions.yml: it parses (a strict YAML subset reader, see
// support/yaml-subset.ts), has the jobs and triggers of seed 001's flow with OIDC credentials,
// its shell passes shellcheck and calls only nixship commands and flags that exist, and its
// steps, run here as GitHub runs them (bash -eo pipefail, the same environment variables), do
// their work against a directory cache: build, push, fetch, publish, status, rollback, and the
// job summaries made from their --json output.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, NIXSHIP_BIN, nixship, run } from "./support/cli.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
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
  readonly needs?: string | string[];
  readonly outputs?: Record<string, string>;
  readonly steps: Step[];
}
interface Workflow {
  readonly on: {
    push: { branches: string[] };
    workflow_dispatch: { inputs: Record<string, { options?: string[]; default?: string }> };
  };
  readonly permissions: Record<string, string>;
  readonly env: Record<string, string>;
  readonly defaults: { run: { shell: string } };
  readonly jobs: Record<string, Job>;
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
  it("runs on pushes to main and by hand, with deploy or rollback, via ssm or agent", () => {
    expect(workflow.on.push.branches).toEqual(["main"]);
    const inputs = workflow.on.workflow_dispatch.inputs;
    expect(inputs.action?.options).toEqual(["deploy", "rollback"]);
    expect(inputs.via?.options).toEqual(["ssm", "agent"]);
    expect(inputs.hosts?.default).toBe("@web");
    expect(workflow.defaults.run.shell).toBe("bash");
    expect(Object.keys(workflow.jobs)).toEqual(["build", "deploy", "rollback"]);
    expect(workflow.jobs.deploy?.needs).toBe("build");
    expect(workflow.jobs.build?.if).toContain("inputs.action == 'deploy'");
    expect(workflow.jobs.rollback?.if).toBe(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a GitHub Actions expression.
      "${{ github.event_name == 'workflow_dispatch' && inputs.action == 'rollback' }}",
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a GitHub Actions expression.
    expect(workflow.jobs.build?.outputs?.hosts).toBe("${{ steps.build.outputs.hosts }}");
  });

  it("gets AWS credentials only through OIDC, in every job that touches AWS", () => {
    expect(workflow.permissions).toEqual({ contents: "read", "id-token": "write" });
    for (const [name, job] of Object.entries(workflow.jobs)) {
      const aws = job.steps.filter((s) =>
        s.uses?.startsWith("aws-actions/configure-aws-credentials@"),
      );
      expect(aws, name).toHaveLength(1);
      expect(Object.keys(aws[0]?.with ?? {}).sort(), name).toEqual([
        "aws-region",
        "role-to-assume",
      ]);
    }
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
      "nixship deploy",
      "nixship release publish",
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
    expect(scripts.join("\n")).toContain('nixship deploy --on "$HOSTS" --via ssm');
    for (const job of ["build", "deploy", "rollback"]) {
      const summaries = workflow.jobs[job]?.steps.filter((s) =>
        s.run?.includes("$GITHUB_STEP_SUMMARY"),
      );
      expect(summaries?.length, job).toBeGreaterThan(0);
      for (const s of summaries ?? []) expect(s.if, s.name).toMatch(/always\(\)/);
    }
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
    const calls = allSteps()
      .flatMap((x) => (x.step.run ?? "").replace(/\\\n\s*/g, " ").split("\n"))
      .map((l) => l.trim())
      .filter((l) => l.startsWith("nixship "));
    expect(calls.length).toBeGreaterThanOrEqual(7);
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
      new RegExp(`### Pushed to file://${work}/cache\\n\\n5 of 5 paths uploaded`),
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
    expect(JSON.parse(verified.stdout)).toMatchObject({ checked: 5, ok: 5, problems: [] });
  });

  it("deploy: fetches the built systems from the cache, publishes a release, and summarises", async () => {
    const hosts = (await readFile(output, "utf8")).trim().replace(/^hosts=/, "");
    ok(await runStep("deploy", "Fetch the built systems from the cache", { BUILT_HOSTS: hosts }));
    ok(await runStep("deploy", "Publish a release"));
    ok(await runStep("deploy", "Summary: release"));
    expect(await summaryText()).toContain(
      "### Released production #1\n\nThe agents apply it as they poll",
    );
    // The agents never report here: status exits 1, and the summary says so.
    expect((await runStep("deploy", "Status of the hosts")).code).toBe(1);
    ok(await runStep("deploy", "Summary: status"));
    const text = await summaryText();
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
    expect(text).toMatch(
      /\| ag1 \| failed \| no system was confirmed healthy on ag1 in the releases read \|/,
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
