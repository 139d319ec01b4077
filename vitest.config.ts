import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "vitest/config";
import { TEST_NIX_CONFIG } from "./support/nix-config.js";

// nixship's own cache (which stores honour conditional writes) for this run alone: a directory
// of its own, not ~/.cache nor one another checkout's suite shares, removed when the run ends.
const CACHE_DIR = mkdtempSync(join(tmpdir(), "nixship-test-cache-"));
// Where commands keep data by default (init's cache beside no git flake): the run's own too.
const DATA_DIR = mkdtempSync(join(tmpdir(), "nixship-test-data-"));
process.on("exit", () => {
  rmSync(CACHE_DIR, { recursive: true, force: true });
  rmSync(DATA_DIR, { recursive: true, force: true });
});

// Unit tests sit beside the code; tests that need real parts (nix, s3rver, sshd) live in test/.
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    pool: "forks",
    // Four files at a time on two cores: most of a lab test's time is spent waiting on hosts
    // (test/deploy.test.ts alone keeps 22 % of two cores busy). Measured on the 2-core VM,
    // session 109: three workers 1,142 s; four 920 s, the cores then 80-90 % busy and each file
    // 8 % slower (more would only wait for the CPU). Every file keeps to what it owns (labs
    // under its own directory, ports the OS gives, its own stores), as it must beside another
    // checkout's suite anyway. `--maxWorkers 1` runs them one by one.
    maxWorkers: 4,
    // After the run, the time each file took, slowest first.
    reporters: ["default", "./test/support/file-times-reporter.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // nixship's own cache is the run's own (above). The ssm delivery polls the stand-in's SSM
    // every quarter second, and a rebooting host and a paused rollout's answer are read every
    // half second, not every 2 s: the lab tests wait on the hosts, not on the polls
    // (docs/development.md lists the waits tests shorten).
    env: {
      NIX_CONFIG: TEST_NIX_CONFIG,
      NIXSHIP_CACHE_DIR: CACHE_DIR,
      XDG_DATA_HOME: DATA_DIR,
      NIXSHIP_SSM_POLL_MS: "250",
      NIXSHIP_REBOOT_PROBE_MS: "500",
      NIXSHIP_PAUSE_POLL_MS: "500",
    },
  },
});
