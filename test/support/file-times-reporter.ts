// A vitest reporter that prints, after the run, the time each test file took, slowest first:
// where the suite's minutes go, for whoever makes it faster.
import type { Reporter, TestModule } from "vitest/node";

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

export default class FileTimesReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const rows = modules
      .map((m) => ({ file: m.relativeModuleId, seconds: fileSeconds(m), state: m.state() }))
      .sort((a, b) => b.seconds - a.seconds);
    if (rows.length === 0) return;
    const total = rows.reduce((sum, r) => sum + r.seconds, 0);
    const lines = rows.map(
      (r) =>
        `${r.seconds.toFixed(1).padStart(8)} s  ${r.file}${r.state === "failed" ? "  (failed)" : ""}`,
    );
    process.stdout.write(
      `\nTime per test file, slowest first (${rows.length} files, ${total.toFixed(0)} s in all, summed over workers):\n${lines.join("\n")}\n`,
    );
  }
}
