import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { formatNix, nixExpression, nixName, nixString } from "./nix-text.js";

/** What Nix itself reads the text as, through `nix-instantiate --eval --json`. */
function nixReads(text: string): unknown {
  const out = execFileSync("nix-instantiate", ["--eval", "--strict", "--json", "--expr", text], {
    encoding: "utf8",
    env: { ...process.env, NIX_CONFIG: "experimental-features = nix-command" },
  });
  return JSON.parse(out);
}

describe("formatNix", () => {
  it("writes values Nix reads back as the same JSON", () => {
    const value = {
      cache: { url: "file:///var/lib/x", publicKeys: ["k-1:AAAA"] },
      "@web": { parallel: 2, health: { http: [] } },
      odd: 'a "quoted" \u0024{not.interpolated} \\ back\nslash\ttab',
      flags: [true, false, null, 1.5, -3],
      inherit: "a keyword as a name",
      empty: {},
      long: Array.from({ length: 12 }, (_, i) => `host-number-${i}`),
    };
    expect(nixReads(formatNix(value))).toEqual(value);
  });

  it("writes a marked expression as it is", () => {
    const text = formatNix({ a: nixExpression("builtins.add 1 2"), b: "builtins.add 1 2" });
    expect(nixReads(text)).toEqual({ a: 3, b: "builtins.add 1 2" });
  });

  it("leaves undefined keys out and refuses a number Nix has not", () => {
    expect(formatNix({ a: undefined, b: 1 })).toBe("{ b = 1; }");
    expect(() => formatNix(Number.NaN)).toThrow(/no Nix number/);
  });

  it("writes short sets and lists on one line, long ones a binding a line", () => {
    expect(formatNix({ a: [1, 2], "@web": {} })).toBe('{ a = [ 1 2 ]; "@web" = { }; }');
    const long = { url: "x".repeat(60), keys: ["k"] };
    expect(formatNix({ cache: long }, "  ")).toBe(
      `{\n    cache = {\n      url = "${"x".repeat(60)}";\n      keys = [ "k" ];\n    };\n  }`,
    );
  });

  it("quotes names that are not bare identifiers", () => {
    expect(nixName("web1")).toBe("web1");
    expect(nixName("@web")).toBe('"@web"');
    expect(nixName("let")).toBe('"let"');
    expect(nixString("\u0024{x}")).toBe(`"\\\u0024{x}"`);
  });
});
