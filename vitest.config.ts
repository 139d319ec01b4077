import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "vitest/config";
import { TEST_NIX_CONFIG } from "./support/nix-config.js";

// Unit tests sit beside the code; tests that need real parts (nix, s3rver, sshd) live in test/.
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // nixship's own cache (which stores honour conditional writes) stays out of ~/.cache.
    env: { NIX_CONFIG: TEST_NIX_CONFIG, NIXSHIP_CACHE_DIR: join(tmpdir(), "nixship-test-cache") },
  },
});
