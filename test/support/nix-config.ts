// The Nix configuration every test runs under: no public substituter is ever contacted,
// no build users are needed, and the new CLI is enabled.
export const TEST_NIX_CONFIG = [
  "experimental-features = nix-command flakes",
  "build-users-group =",
  "substituters =",
  "trusted-substituters =",
  "sandbox = false",
].join("\n");
