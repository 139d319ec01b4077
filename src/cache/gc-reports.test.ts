import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { GC_REPORTS_KEPT, gcReportKeys, keepGcReport, readGcReport } from "./gc-reports.js";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-gc-reports-"));
  store = await openStore(`file://${dir}`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the kept reports of collections", () => {
  it("keeps the newest 20, each readable as written", async () => {
    const written: string[] = [];
    for (let i = 0; i < GC_REPORTS_KEPT + 3; i++) {
      const at = new Date(Date.UTC(2026, 10, 1, 0, i));
      written.push(await keepGcReport(store, { n: i, deletedPaths: [`/nix/store/${i}`] }, at));
    }
    expect(GC_REPORTS_KEPT).toBe(20);
    expect(await gcReportKeys(store)).toEqual(written.slice(3));
    expect(written[3]).toMatch(/^gc\/reports\/2026-11-01T00-03-00\.000Z-[0-9a-f]{8}\.json$/);
    expect(await readGcReport(store, written.at(-1) as string)).toEqual({
      n: 22,
      deletedPaths: ["/nix/store/22"],
    });
    expect(await readGcReport(store, written[0] as string)).toBeUndefined();
  });
});
