// The Nix configuration every test and benchmark runs under: no public substituter is ever contacted,
// no build users are needed, the new CLI is enabled, and Nix's narinfo cache (kept per cache
// URL in ~/.cache/nix) is off, so a reused loopback port can never answer from an old run.
export const TEST_NIX_CONFIG = [
  "experimental-features = nix-command flakes",
  "build-users-group =",
  "substituters =",
  "trusted-substituters =",
  "sandbox = false",
  "narinfo-cache-positive-ttl = 0",
  "narinfo-cache-negative-ttl = 0",
].join("\n");
