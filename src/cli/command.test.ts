// Flag parsing: a flag that takes one value is refused when given twice (parseArgs would keep
// the last and say nothing: `deploy --on web1 --on web2` deployed web2 alone), a flag that may
// be repeated collects each, and a flag without a value may come twice.
import { describe, expect, it } from "vitest";
import { UsageError } from "../errors.js";
import { parseFlags } from "./command.js";

const OPTIONS = {
  on: { type: "string" },
  fleet: { type: "string" },
  "trusted-key": { type: "string", multiple: true },
  json: { type: "boolean" },
} as const;

describe("parseFlags", () => {
  it("refuses --on given twice, and says how to give several selectors", () => {
    const err = (() => {
      try {
        parseFlags(["--on", "web1", "--on=web2"], OPTIONS, "deploy");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err).toMatchObject({
      message: "deploy: --on was given 2 times; it takes one value",
      hint: "give it once, with every selector joined by commas (--on web1,web2); see 'nixship deploy --help'",
    });
  });

  it("refuses any other one-value flag given twice, without echoing its values", () => {
    expect(() =>
      parseFlags(["--fleet", "/a/secret-place", "--fleet", "b"], OPTIONS, "plan"),
    ).toThrow(/^plan: --fleet was given 2 times; it takes one value$/);
  });

  it("collects a flag that may be repeated, and takes a boolean twice", () => {
    const { values } = parseFlags(
      ["--trusted-key", "a", "--trusted-key", "b", "--json", "--json", "--on", "web1,web2"],
      OPTIONS,
      "verify",
    );
    expect(values).toEqual({ "trusted-key": ["a", "b"], json: true, on: "web1,web2" });
  });
});
