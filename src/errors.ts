// The one small error hierarchy: every fault carries a stable code, a message that names
// what was wrong and where, an optional hint, and the process exit code the CLI uses.

/** 130: interrupted (SIGINT, SIGTERM), as shells report a process ended by SIGINT. */
export type ExitCode = 1 | 2 | 130;

export class NixshipError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;

  constructor(
    code: string,
    message: string,
    opts: { hint?: string; exitCode?: ExitCode; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
  }
}

/** Bad flags or arguments (exit 2). */
export class UsageError extends NixshipError {
  constructor(message: string, hint?: string) {
    super("usage", message, { exitCode: 2, ...(hint ? { hint } : {}) });
  }
}

/** Malformed input data: a NAR, narinfo, key file, URL (exit 2). */
export class InputError extends NixshipError {
  constructor(code: string, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(code, message, { ...opts, exitCode: 2 });
  }
}

/** An operation that could not be completed: a missing object, a failed command (exit 1). */
export class OperationError extends NixshipError {
  constructor(code: string, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(code, message, { ...opts, exitCode: 1 });
  }
}

/** Stopped by an interrupt (SIGINT, SIGTERM) before it could finish (exit 130). */
export class InterruptedError extends NixshipError {
  constructor(message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super("interrupted", message, { ...opts, exitCode: 130 });
  }
}
