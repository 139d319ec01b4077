// Who started a deploy and from what: a CI run or user@machine, and each flake with
// its git commit and whether its tracked files changed; credentials never kept.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FleetHost } from "../fleet/fleet.js";
import { deployedBy, deploySources } from "./deploy-origin.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-origin-"));
  const git = (...args: string[]) =>
    execFileSync("git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", ...args]);
  git("init", "-q");
  await writeFile(join(dir, "flake.nix"), "{ outputs = _: {}; }\n");
  git("add", "flake.nix");
  git("commit", "-q", "-m", "one");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const host = (installable: string): FleetHost =>
  ({
    name: "web1",
    tags: [],
    address: undefined,
    delivery: "ssh",
    system: { kind: "flake", installable },
  }) as unknown as FleetHost;

describe("who started a deploy", () => {
  it("names the GitHub Actions run, and else user@machine", () => {
    expect(
      deployedBy({
        GITHUB_ACTIONS: "true",
        GITHUB_SERVER_URL: "https://github.com",
        GITHUB_REPOSITORY: "acme/fleet",
        GITHUB_RUN_ID: "42",
        GITHUB_WORKFLOW: "deploy",
        GITHUB_ACTOR: "alice",
      }),
    ).toBe("GitHub Actions https://github.com/acme/fleet/actions/runs/42 (deploy, by alice)");
    expect(deployedBy({})).toMatch(/^[^@\s]+@\S+$/);
  });
});

describe("from what", () => {
  it("a local flake's commit, clean, then dirty once a tracked file changes", async () => {
    const head = execFileSync("git", ["-C", dir, "rev-parse", "HEAD"]).toString().trim();
    expect(await deploySources([host(`path:${dir}#web`)], "/")).toEqual([
      { flake: dir, rev: head, dirty: false },
    ]);
    await writeFile(join(dir, "flake.nix"), "{ outputs = _: { x = 1; }; }\n");
    expect(await deploySources([host(`${dir}#web`)], "/")).toEqual([
      { flake: dir, rev: head, dirty: true },
    ]);
  });

  it("no commit for a flake inside a work tree that does not track it (a lab's fleet in a checkout)", async () => {
    const inner = join(dir, "lab", "fleet");
    await mkdir(inner, { recursive: true });
    await writeFile(join(inner, "flake.nix"), "{ outputs = _: {}; }\n");
    expect(await deploySources([host(`path:${inner}#nixship`)], "/")).toEqual([
      { flake: inner, rev: null, dirty: null },
    ]);
  });

  it("a remote flake as named, without the credentials its URL may hold", async () => {
    expect(
      await deploySources([host("git+https://bot:ghp_secret@github.com/acme/fleet#web")], "/"),
    ).toEqual([{ flake: "git+https://github.com/acme/fleet", rev: null, dirty: null }]);
  });

  it("a remote flake as what identifies it: no password holding '@', no token in its query", async () => {
    expect(
      await deploySources(
        [
          host("git+https://bot:p@ss_SECRET@github.com/acme/fleet?ref=prod#web"),
          host(
            "https://gitlab.example/api/v4/projects/7/repository/archive.tar.gz?private_token=glpat-SECRET#web",
          ),
          host("github:acme/fleet?ref=main&access_token=ghp_SECRET#web"),
        ],
        "/",
      ),
    ).toEqual([
      { flake: "git+https://github.com/acme/fleet?ref=prod", rev: null, dirty: null },
      {
        flake: "https://gitlab.example/api/v4/projects/7/repository/archive.tar.gz",
        rev: null,
        dirty: null,
      },
      { flake: "github:acme/fleet?ref=main", rev: null, dirty: null },
    ]);
  });

  it("a CI run's URL without a token a runner put in it", () => {
    const by = deployedBy({
      GITLAB_CI: "true",
      CI_JOB_URL:
        "https://ci:glpat-SECRET@gitlab.example/acme/fleet/-/jobs/9?private_token=glpat-SECRET",
      GITLAB_USER_LOGIN: "alice",
    });
    expect(by).toBe("GitLab CI https://gitlab.example/acme/fleet/-/jobs/9 (by alice)");
  });
});
