import { describe, expect, it } from "vitest";
import { parsePin, pinKey } from "./pins.js";

const PATH = "/nix/store/0c0ql6yxrh1gyj5sjvjscvb44ah9q0lr-hello-2.12";
const body = (o: unknown) => Buffer.from(JSON.stringify(o));

describe("pins", () => {
  it("are keyed by name under gc/pins/, and a bad name is refused with the rule", () => {
    expect(pinKey("installer-v2")).toBe("gc/pins/installer-v2.json");
    expect(() => pinKey("../x")).toThrow(/pin name "..\/x" must match/);
    expect(() => pinKey("a".repeat(65))).toThrow(/must match/);
  });

  it("parse what cache pin writes, and refuse anything else by its fault", () => {
    const key = pinKey("p");
    const good = { version: 1, name: "p", paths: [PATH], created: "2026-11-25T12:00:00.000Z" };
    expect(parsePin(body(good), key)).toEqual({ name: "p", paths: [PATH], created: good.created });
    expect(() => parsePin(Buffer.from("{"), key)).toThrow(/not JSON/);
    expect(() => parsePin(body({ ...good, version: 2 }), key)).toThrow(/version/);
    expect(() => parsePin(body({ ...good, name: "q" }), key)).toThrow(
      /name does not match its key/,
    );
    expect(() => parsePin(body({ ...good, paths: ["/etc/passwd"] }), key)).toThrow(
      /paths\[0\] is not a store path/,
    );
    expect(() => parsePin(body({ ...good, created: "soon" }), key)).toThrow(/created/);
  });
});
