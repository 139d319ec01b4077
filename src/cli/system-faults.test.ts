import { describe, expect, it } from "vitest";
import { systemFault } from "./system-faults.js";

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

describe("systemFault", () => {
  it("turns the machine's and the network's faults into errors with a hint, exit 1", () => {
    const fault = systemFault(
      errno("EADDRNOTAVAIL", "listen EADDRNOTAVAIL: address not available 10.231.9.1"),
    );
    expect(fault).toMatchObject({
      code: "system-eaddrnotavail",
      message: "listen EADDRNOTAVAIL: address not available 10.231.9.1",
      exitCode: 1,
    });
    expect(fault?.hint).toMatch(/no network interface of this machine has that address/);
    expect(systemFault(errno("EACCES", "open /var/lib/x"))?.hint).toMatch(/permission denied/);
    // A legal NAR restored deep enough to pass the file system's path limit.
    expect(systemFault(errno("ENAMETOOLONG", "mkdir /a/b"))).toMatchObject({
      code: "system-enametoolong",
      hint: expect.stringMatching(/longer than this file system allows/),
    });
  });

  it("leaves other errors to be reported as bugs", () => {
    expect(systemFault(new TypeError("x is undefined"))).toBeUndefined();
    expect(systemFault(errno("ERR_ASSERTION", "boom"))).toBeUndefined();
    expect(systemFault("a string")).toBeUndefined();
  });
});
