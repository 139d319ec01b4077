// `status --help` says what a host with a pending boot shows: the note the table prints for it,
// word for word, with its system and time in place of SYSTEM and TIME.
import { describe, expect, it } from "vitest";
import { formatStatusTable } from "../ui/status-table.js";
import { liveRow } from "../views/status-rows.js";
import { statusCommand } from "./status.js";

const OLD = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-web-v1";
const NEW = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-web-v2";

describe("status --help", () => {
  it("says what a host with a pending boot shows, as the table prints it, and that it is not in step", () => {
    const help = statusCommand.help.replace(/\s+/g, " ");
    expect(help).toContain("pending boot");
    const template = /notes "(reboot into SYSTEM [^"]*)"/.exec(help)?.[1];
    expect(template).toBeDefined();
    const since = 1_735_732_800;
    const row = liveRow(
      { name: "web1", delivery: "ssh", tags: [], address: "192.0.2.1" } as never,
      {
        reachable: true,
        current: OLD,
        profile: NEW,
        generation: 4,
        generations: [],
        pending: undefined,
        boot: {
          id: "b1",
          assessment: null,
          pending: { token: "t", path: NEW, since, generation: 4, previous: OLD, bootId: "b0" },
        },
      } as never,
      undefined,
    );
    expect(row.inStep).toBe(false);
    expect(help).toContain("not in step");
    const line = formatStatusTable([row]).split("\n")[1] as string;
    expect(line).toContain(
      (template as string)
        .replace("SYSTEM", "web-v2")
        .replace("TIME", new Date(since * 1000).toISOString()),
    );
    expect(line).toContain("boots next: web-v2");
    expect(help).toContain('"boots next: SYSTEM"');
  });
});
