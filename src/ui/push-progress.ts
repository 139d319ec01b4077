// Renders push events: a live line on a TTY, and a summary (human or JSON) at the end.
import type { PushEvent, PushSummary } from "../cache/push.js";
import { formatBytes, formatSeconds } from "./format.js";
import { ProgressLine } from "./progress-line.js";

export class PushProgress {
  private readonly line: ProgressLine;
  private total = { paths: 0, bytes: 0 };
  private done = { paths: 0, bytes: 0 };
  private readonly started = Date.now();

  constructor(out: NodeJS.WritableStream & { isTTY?: boolean }) {
    this.line = new ProgressLine(out);
  }

  readonly onEvent = (event: PushEvent): void => {
    switch (event.type) {
      case "plan":
        this.total = { paths: event.toPush, bytes: event.narBytes };
        break;
      case "bytes":
        this.done.bytes += event.narBytes;
        break;
      case "path-pushed":
        this.done.paths++;
        break;
      case "closure":
        break;
    }
    const secs = (Date.now() - this.started) / 1000;
    const rate = secs > 0 ? this.done.bytes / 1e6 / secs : 0;
    this.line.update(
      `pushing ${this.done.paths}/${this.total.paths} paths, ${formatBytes(this.done.bytes)}/${formatBytes(this.total.bytes)} NAR, ${rate.toFixed(0)} MB/s`,
      event.type === "plan",
    );
  };

  finish(): void {
    this.line.clear();
  }
}

export function formatPushSummary(s: PushSummary, to: string): string {
  const resigned = s.resigned > 0 ? `, ${s.resigned} of them re-signed` : "";
  const skipped =
    s.alreadyPresent > 0 ? ` (${s.alreadyPresent} already in the cache${resigned})` : "";
  return [
    // A new cache: said, so that a mistyped URL does not pass unseen.
    ...(s.createdCache === true ? [`created a new binary cache at ${to} (it had none)`] : []),
    `pushed ${s.pushed} of ${s.paths} paths to ${to}${skipped}`,
    `  ${formatBytes(s.narBytes)} NAR -> ${formatBytes(s.fileBytes)} ${s.compression} in ${formatSeconds(s.seconds)} (${s.narMBps.toFixed(1)} MB/s)`,
  ].join("\n");
}
