// How much of a host's output a deploy passes on: its first HOST_LOG_LINES lines per activation,
// then one line that says how much more was left out, once the host is done. A host's own lines
// are each cut already (util/streamed-run.ts); this bounds how many reach a CI log or a --json
// reader, whatever the host prints. Its failure message keeps its last lines (session-steps.ts).

/** Lines of one host's output passed on per wave. */
export const HOST_LOG_LINES = 2000;

export class HostLogCap {
  readonly #limit: number;
  readonly #passed = new Map<string, number>();
  readonly #dropped = new Map<string, { lines: number; bytes: number }>();

  constructor(limit: number = HOST_LOG_LINES) {
    this.#limit = limit;
  }

  /** Whether `line` of `host` is passed on; the first one past the limit says so instead. */
  pass(host: string, line: string): string | undefined {
    const passed = this.#passed.get(host) ?? 0;
    if (passed < this.#limit) {
      this.#passed.set(host, passed + 1);
      return line;
    }
    const dropped = this.#dropped.get(host) ?? { lines: 0, bytes: 0 };
    dropped.lines++;
    dropped.bytes += Buffer.byteLength(line) + 1;
    this.#dropped.set(host, dropped);
    return dropped.lines === 1
      ? `more than ${this.#limit} lines of output from ${host}: the rest is not shown`
      : undefined;
  }

  /** What was left out of `host`'s output, once it is done; undefined when nothing was. */
  done(host: string): string | undefined {
    const dropped = this.#dropped.get(host);
    this.#passed.delete(host);
    this.#dropped.delete(host);
    if (dropped === undefined) return undefined;
    return `${dropped.lines} more line(s) (${dropped.bytes} bytes) of output from ${host} not shown`;
  }
}
