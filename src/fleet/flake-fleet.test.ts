import { describe, expect, it } from "vitest";
import { fleetExpression, formatNixAttrPath, nixProblem } from "./flake-fleet.js";

describe("attribute paths and problems in Nix's words", () => {
  it("writes paths as Nix does, quoting names that need it", () => {
    expect(formatNixAttrPath(["nixship", "hosts", "web1", "tags", 2])).toBe(
      "nixship.hosts.web1.tags[2]",
    );
    expect(formatNixAttrPath(["nixship", "policies", "@web", "canary"])).toBe(
      'nixship.policies."@web".canary',
    );
    expect(formatNixAttrPath([])).toBe("(the fleet)");
  });

  it("names a fleet-file problem at the flake's attribute, with lists and attribute sets", () => {
    expect(
      nixProblem(["nixship"], {
        path: ["hosts", "web1", "tags"],
        message: 'must be an array (got "web")',
      }),
    ).toBe('nixship.hosts.web1.tags: must be a list (got "web")');
    expect(
      nixProblem(["fleets", "prod"], { path: ["ssh"], message: "must be an object (got 3)" }),
    ).toBe("fleets.prod.ssh: must be an attribute set (got 3)");
  });
});

describe("the evaluation's expression", () => {
  it("names hosts' systems by the installable it is given, escaped for a Nix string", () => {
    const expr = fleetExpression({
      flake: "path:/tmp/fleet",
      attrPath: ["nixship"],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Nix's interpolation, to be escaped.
      installable: 'github:o/r?x="${y}"#nixship',
      localDir: "/tmp/fleet",
      subdir: "",
    });
    expect(expr).toContain('builtins.getFlake "path:/tmp/fleet"');
    expect(expr).toContain('at flake [ "nixship" ]');
    expect(expr).toContain(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Nix's interpolation, escaped and not.
      '"github:o/r?x=\\"\\${y}\\"#nixship.hosts.${builtins.elemAt path 1}.system"',
    );
  });
});
