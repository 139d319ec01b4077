// A vitest reporter that prints, after the run, where the suite's minutes went (the slowest test
// files) and then, last, every failed test with the start of its error, so the end of the output
// (all a CI log may keep) says what failed.
import type { Reporter, TestModule } from "vitest/node";

const SLOWEST_SHOWN = 40;
const ERROR_LINES_SHOWN = 6;

/** A file's whole time: environment, harness, import and collection, then its tests and hooks. */
function fileSeconds(module: TestModule): number {
  const d = module.diagnostic();
  const ms =
    d.environmentSetupDuration +
    d.prepareDuration +
    d.collectDuration +
    d.setupDuration +
    d.duration;
  return ms / 1000;
}

function indented(text: string): string {
  return text
    .split("\n")
    .slice(0, ERROR_LINES_SHOWN)
    .map((line) => `      ${line}`)
    .join("\n");
}

/** Each failed test of a module (or the module's own error, when it failed to load), as lines. */
function failureLines(module: TestModule): string[] {
  const lines: string[] = [];
  for (const error of module.errors())
    lines.push(`  ${module.relativeModuleId}`, indented(error.message ?? String(error)));
  for (const test of module.children.allTests("failed")) {
    lines.push(`  ${module.relativeModuleId} > ${test.fullName}`);
    for (const error of test.result().errors ?? [])
      lines.push(indented(error.message ?? String(error)));
  }
  return lines;
}

export default class FileTimesReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const rows = modules
      .map((m) => ({ file: m.relativeModuleId, seconds: fileSeconds(m), state: m.state() }))
      .sort((a, b) => b.seconds - a.seconds);
    if (rows.length === 0) return;
    const total = rows.reduce((sum, r) => sum + r.seconds, 0);
    const lines = rows
      .slice(0, SLOWEST_SHOWN)
      .map(
        (r) =>
          `${r.seconds.toFixed(1).padStart(8)} s  ${r.file}${r.state === "failed" ? "  (failed)" : ""}`,
      );
    process.stdout.write(
      `\nThe ${lines.length} slowest of ${rows.length} test files (${total.toFixed(0)} s in all, summed over workers):\n${lines.join("\n")}\n`,
    );
    const failures = modules.flatMap(failureLines);
    process.stdout.write(
      failures.length === 0
        ? "\nNo test failed.\n"
        : `\nFailed (${modules.filter((m) => m.state() === "failed").length} files):\n${failures.join("\n")}\n`,
    );
  }
}
