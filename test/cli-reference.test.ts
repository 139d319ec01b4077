// docs/cli.md, the CLI reference, is what the built CLI's help prints now: the generator
// (scripts/cli-reference.mjs, `npm run docs:cli`) run again must give the file as committed, and
// each command's section must hold what `nixship COMMAND --help` prints, run here on its own.
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship, run } from "../support/cli.js";

const DOC = fileURLToPath(new URL("../docs/cli.md", import.meta.url));
const SCRIPT = fileURLToPath(new URL("../scripts/cli-reference.mjs", import.meta.url));

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-cli-reference-"));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("docs/cli.md", () => {
  it("is what the generator writes from the help the commands print now", async () => {
    const generated = await run(process.execPath, [SCRIPT, "--stdout"]);
    expect(generated.code, generated.stderr).toBe(0);
    const committed = await readFile(DOC, "utf8");
    // A difference fails with the diff; the fix is `npm run docs:cli`.
    expect(committed, "docs/cli.md is stale: run npm run docs:cli").toBe(generated.stdout);
  });

  it("holds every command that `nixship --help` lists, each with its own --help as printed", async () => {
    const doc = await readFile(DOC, "utf8");
    const usage = await nixship(["--help"]);
    expect(usage.code).toBe(0);
    const listed = usage.stdout
      .split("Commands:\n")[1]
      ?.split("\n\n")[0]
      ?.split("\n")
      .map((l) => l.trim().split(/ {2,}/)[0] as string);
    expect(listed?.length).toBeGreaterThan(40);
    const all = listed ?? [];
    // A few at a time: each is a Node start-up.
    for (let i = 0; i < all.length; i += 4) {
      const batch = all.slice(i, i + 4);
      const helps = await Promise.all(batch.map((w) => nixship([...w.split(" "), "--help"])));
      batch.forEach((words, j) => {
        const help = helps[j] as { code: number; stdout: string };
        expect(help.code, words).toBe(0);
        const section = `## \`nixship ${words}\`\n\n\`\`\`text\n${help.stdout.trimEnd()}\n\`\`\`\n`;
        expect(doc, `docs/cli.md's section of ${words}`).toContain(section);
      });
    }
  });

  it("--check refuses a stale copy, naming it and the fix", async () => {
    const stale = join(work, "cli.md");
    await copyFile(DOC, stale);
    const ok = await run(process.execPath, [SCRIPT, "--check", stale]);
    expect(ok.code, ok.stderr).toBe(0);
    const text = await readFile(stale, "utf8");
    await writeFile(stale, text.replace("--max-failures N", "--max-failure N"));
    const r = await run(process.execPath, [SCRIPT, "--check", stale]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${stale} differs from what the commands' help prints`);
    expect(r.stderr).toContain("npm run docs:cli");
  });
});
