// The report of `init --from` for people: three headings, each option with its nodes, and a text
// of several lines (an ssh_config block) indented under its option, to paste as it stands.
import { describe, expect, it } from "vitest";
import { conversionReportLines } from "./conversion-report.js";

describe("the conversion report", () => {
  it("puts each entry under its heading, a block of lines indented under it", () => {
    const nodes = ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10"];
    expect(
      conversionReportLines([
        {
          option: "deployment.targetHost",
          outcome: "carried",
          text: "hosts.NAME.address",
          nodes: [],
        },
        {
          option: "deployment.targetPort",
          outcome: "mapped",
          text: "a Port line in your ssh_config:\nHost b.example\n  Port 1234",
          nodes: ["b"],
        },
        { option: "deployment.keys", outcome: "left", text: "no counterpart", nodes },
      ]),
    ).toEqual([
      "carried over (the same meaning in nixship):",
      "  deployment.targetHost: hosts.NAME.address",
      "mapped (another shape in nixship):",
      "  deployment.targetPort (b): a Port line in your ssh_config:",
      "      Host b.example",
      "        Port 1234",
      "left behind (no counterpart), and why:",
      "  deployment.keys (n1, n2, n3, n4, n5, n6, n7, n8 and 2 more): no counterpart",
    ]);
  });
});
