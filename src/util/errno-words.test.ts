import { describe, expect, it } from "vitest";
import { errnoWords, isPathFault } from "./errno-words.js";

const errno = (code: string) => Object.assign(new Error(`${code}: raw`), { code });

describe("errnoWords", () => {
  it("says a code in words, with the code", () => {
    expect(errnoWords(errno("ENOENT"))).toBe("no such file or directory (ENOENT)");
    expect(errnoWords(errno("ENOTFILE"))).toBe("it is not a regular file (ENOTFILE)");
    expect(errnoWords(errno("EWHATEVER"))).toBe("EWHATEVER");
    expect(errnoWords(new Error("no code"))).toBe("no code");
  });

  it("tells the path's faults from the machine's", () => {
    expect(isPathFault(errno("ENOENT"))).toBe(true);
    expect(isPathFault(errno("EISDIR"))).toBe(true);
    expect(isPathFault(errno("ENOSPC"))).toBe(false);
    expect(isPathFault(errno("EIO"))).toBe(false);
    expect(isPathFault(new Error("x"))).toBe(false);
  });
});
