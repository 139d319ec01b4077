// The dashboard's release page and host page say who published a release and who put a host's
// system there: read from a directory store, an origin changed in the store marked
// untrusted, never shown as true.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { publishRelease, releaseOriginKey } from "../release/release-store.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import type { StatusRow } from "../views/status-rows.js";
import { hostMain, releaseMain } from "./pages.js";
import { ReleaseReads } from "./release-reads.js";

const SYS = `/nix/store/${"a".repeat(32)}-example-web-system-v2` as StorePath;
const key = generateSecretKey("prod-release-1");
const trust = { status: "trusted", key: "prod-release-1" } as const;
const now = new Date("2026-11-26T07:00:00.000Z");

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-release-origin-page-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the dashboard's release page", () => {
  it("names who published the release and from what, and marks an origin changed in the store", async () => {
    await publishRelease(store, {
      channel: "prod",
      hosts: { web1: { path: SYS } },
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      key,
      origin: {
        by: "alice@deployer",
        sources: [{ flake: "/src/fleet", rev: "c".repeat(40), dirty: false }],
      },
    });
    const page = async (poll: number) => {
      const reads = new ReleaseReads(store, [publicKeyOf(key)]);
      const data = await reads.page("prod", 1, trust, poll);
      if (data === undefined) throw new Error("no release page");
      return String(releaseMain(data, new Map(), now));
    };
    expect(await page(1)).toContain(
      `Published by alice@deployer from /src/fleet at ${"c".repeat(12)}.`,
    );
    const stored = JSON.parse(String(await readAll(store, releaseOriginKey("prod", 1))));
    await store.put(
      releaseOriginKey("prod", 1),
      Buffer.from(JSON.stringify({ ...stored, by: "mallory@nowhere" })),
    );
    const altered = await page(2);
    expect(altered).toContain("origin untrusted");
    expect(altered).toContain("Who published it is not known");
    expect(altered).not.toContain("mallory");
  });
});

describe("the dashboard's host page", () => {
  it("says who put the host's system there, or that it cannot be told", () => {
    const row = {
      host: "web1",
      mode: "ssh",
      source: "stored",
      inStep: true,
      reported: true,
      state: "success",
      current: SYS,
      origin: {
        kind: "rollout",
        ref: "0123456789ab",
        by: "alice@deployer",
        sources: [],
        problem: null,
      },
    } as unknown as StatusRow;
    const detail = {
      row,
      tags: [],
      history: [],
      change: { status: "none", why: "none" },
    } as const;
    const page = String(hostMain(detail, now));
    expect(page).toContain(
      '<dt>Put there</dt><dd><span class="origin">deployed (rollout 0123456789ab) by alice@deployer</span></dd>',
    );
    const unknown = {
      ...detail,
      row: {
        ...row,
        origin: { ...(row.origin as object), by: null, problem: "its rollout record is gone" },
      } as StatusRow,
    };
    expect(String(hostMain(unknown, now))).toContain("by whom unknown: its rollout record is gone");
  });

  it("lists the systems the host ran, not those a rollout named for it and never brought", () => {
    const sys = (c: string, v: string) => `/nix/store/${c.repeat(32)}-example-web-system-${v}`;
    const entry = (state: string, system: string, before: string, phase: string | null = null) => ({
      host: "web1",
      state,
      phase,
      system,
      before,
      message: null,
    });
    const rollout = (id: string, e: ReturnType<typeof entry>) => ({
      id,
      mode: "ssh",
      action: "switch",
      startedAt: "2026-11-26T07:00:00.000Z",
      updatedAt: "2026-11-26T07:00:01.000Z",
      wave: 1,
      entry: e,
    });
    const row = {
      host: "web1",
      mode: "ssh",
      source: "stored",
      inStep: false,
      reported: true,
      state: "success",
      current: sys("2", "v2"),
      behindRollout: {
        wants: sys("3", "v3"),
        rollout: "cccccccccccc",
        at: "x",
        why: "not started",
      },
    } as unknown as StatusRow;
    const page = String(
      hostMain(
        {
          row,
          tags: [],
          history: [
            rollout("cccccccccccc", entry("not-started", sys("3", "v3"), sys("2", "v2"))),
            // Failed before anything of it changed: it never ran v4.
            rollout("dddddddddddd", entry("failed", sys("4", "v4"), sys("2", "v2"), "realise")),
            rollout("bbbbbbbbbbbb", entry("confirmed", sys("2", "v2"), sys("1", "v1"))),
            {
              ...rollout("aaaaaaaaaaaa", entry("confirmed", sys("1", "v1"), sys("0", "v0"))),
              undoes: "999999999999",
            },
          ] as never,
          change: { status: "none", why: "none" },
        },
        now,
      ),
    );
    const listed = page.slice(page.indexOf("<h2>Systems it ran</h2>"));
    expect(listed).toContain(sys("1", "v1"));
    expect(listed).toContain(sys("2", "v2"));
    expect(listed).not.toContain(sys("3", "v3"));
    expect(listed).not.toContain(sys("4", "v4"));
    // A rollback names the rollout it undid.
    expect(page).toContain("<td>aaaaaaaaaaaa</td><td>rollback of 999999999999 (ssh)</td>");
    expect(page).toContain("<td>bbbbbbbbbbbb</td><td>switch (ssh)</td>");
    expect(page).toContain(
      '<dt>Behind</dt><dd><span class="badge behind">behind</span> rollout cccccccccccc (not started): should run example-web-system-v3</dd>',
    );
  });
});
