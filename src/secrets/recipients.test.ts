// A secret the fleet does not have: named, with how to add one in either kind of fleet, or the
// fleet's own secrets, the closest first.
import { describe, expect, it } from "vitest";
import { findSecret } from "./recipients.js";

describe("findSecret", () => {
  it("says how to add a secret to a fleet that has none, as a fleet file and in Nix", () => {
    expect(() => findSecret({ secrets: undefined }, "db-password")).toThrow(
      expect.objectContaining({
        message: 'the fleet has no secret "db-password"',
        hint: 'add it to the fleet first: in a fleet file, "secrets": {"admins": [...], "entries": {"db-password": {"hosts": "@web"}}}; in a fleet written in Nix, secrets = { admins = [ ... ]; entries."db-password".hosts = "@web"; }; (docs/secrets.md)',
      }),
    );
  });
});
