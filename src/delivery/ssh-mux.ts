// Ending ssh's shared connections (ControlMaster) without an ssh process each: the client side
// of OpenSSH's connection-multiplexing protocol (PROTOCOL.mux in OpenSSH's sources), just
// enough to greet a master on its control socket and ask it to terminate, which is what
// `ssh -O exit` does. A command that used N hosts ends its N masters without starting N
// processes (each a fork of the deployer and an exec of ssh).
//
// A packet is `uint32 length, uint32 type, body`; both sides first send MUX_MSG_HELLO
// (`uint32 version`, then extension pairs); MUX_C_TERMINATE carries a request id, and the
// master answers MUX_S_OK with it and exits (often before the answer is sent: a master that
// greeted and then closed the socket has ended), or MUX_S_PERMISSION_DENIED / MUX_S_FAILURE
// with the id and a reason.
import { lstat, readdir } from "node:fs/promises";
import { connect } from "node:net";
import { basename, dirname, join } from "node:path";
import { mapLimit } from "../util/pool.js";
import { withoutControls } from "../util/text.js";

const MUX_MSG_HELLO = 0x00000001;
const MUX_C_TERMINATE = 0x10000005;
const MUX_S_OK = 0x80000001;
const MUX_S_PERMISSION_DENIED = 0x80000002;
const MUX_S_FAILURE = 0x80000003;
const MUX_VERSION = 4;
/** The longest packet read from a master: its hello and answers are a few dozen bytes. */
const PACKET_LIMIT = 64 * 1024;
/** Milliseconds one master may take to answer. */
const ANSWER_TIMEOUT = 5000;
/** Masters asked at once. */
const CONCURRENCY = 32;
/** The request id of our one request. */
const REQUEST_ID = 1;

export type TerminateOutcome =
  /** The master said OK: it exits. */
  | { readonly status: "terminated" }
  /** Nothing listens there (a master that already ended, or a stale socket). */
  | { readonly status: "gone" }
  /** It did not end: refused, not a master, or no answer in time; `why` says which. */
  | { readonly status: "failed"; readonly why: string };

/** Asks the ssh master listening on `socket` to end, as `ssh -O exit` does; never rejects. */
export function terminateMaster(
  socket: string,
  timeoutMs: number = ANSWER_TIMEOUT,
): Promise<TerminateOutcome> {
  return new Promise((resolve) => {
    const conn = connect({ path: socket });
    let buffered = Buffer.alloc(0);
    let greeted = false;
    const finish = (outcome: TerminateOutcome): void => {
      clearTimeout(timer);
      conn.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(
      () => finish({ status: "failed", why: `no answer within ${timeoutMs / 1000}s` }),
      timeoutMs,
    );
    conn.on("connect", () => {
      conn.write(
        Buffer.concat([packet(MUX_MSG_HELLO, MUX_VERSION), packet(MUX_C_TERMINATE, REQUEST_ID)]),
      );
    });
    conn.on("data", (data: Buffer) => {
      buffered = Buffer.concat([buffered, data]);
      for (;;) {
        if (buffered.length < 4) return;
        const length = buffered.readUInt32BE(0);
        if (length < 4 || length > PACKET_LIMIT) {
          return finish({ status: "failed", why: `not an ssh master (a ${length}-byte packet)` });
        }
        if (buffered.length < 4 + length) return;
        const body = buffered.subarray(4, 4 + length);
        buffered = buffered.subarray(4 + length);
        const outcome = answer(body, greeted);
        if (outcome === "hello") greeted = true;
        else if (outcome !== undefined) return finish(outcome);
      }
    });
    conn.on("error", (err: NodeJS.ErrnoException) =>
      finish(
        err.code === "ENOENT" || err.code === "ECONNREFUSED"
          ? { status: "gone" }
          : { status: "failed", why: err.code ?? err.message },
      ),
    );
    // A master that greeted us may exit before its OK reaches us (OpenSSH's own client takes
    // the closed socket as the end, too).
    conn.on("close", () =>
      finish(
        greeted
          ? { status: "terminated" }
          : { status: "failed", why: "not an ssh master (it closed the socket without a hello)" },
      ),
    );
  });
}

/** A master kept alive by a control connection held open to it (see holdMaster). */
export interface MasterHold {
  /** Lets the master go: it then ends its ControlPersist time later, unless used again. */
  close(): void;
}

/**
 * Holds a control connection open to the ssh master listening on `socket`, greeted and idle,
 * so that its ControlPersist time does not run out while the deployer still counts on it: a
 * master with a control client connected does not end, and one whose deployer dies is let go
 * with the deployer's sockets and ends ControlPersist later, as before. Undefined when no
 * master answers there (none, or not in time); never rejects. The connection does not keep
 * this process alive; `onEnd` is told when a held connection ends.
 */
export function holdMaster(
  socket: string,
  onEnd: () => void = () => {},
  timeoutMs: number = ANSWER_TIMEOUT,
): Promise<MasterHold | undefined> {
  return new Promise((resolve) => {
    const conn = connect({ path: socket });
    conn.unref();
    let buffered = Buffer.alloc(0);
    let settled = false;
    let held = false;
    const hold: MasterHold = { close: () => conn.destroy() };
    const settle = (greeted: boolean): void => {
      if (settled) return;
      settled = true;
      held = greeted;
      clearTimeout(timer);
      if (!greeted) conn.destroy();
      resolve(greeted ? hold : undefined);
    };
    const timer = setTimeout(() => settle(false), timeoutMs);
    timer.unref();
    conn.on("connect", () => conn.write(packet(MUX_MSG_HELLO, MUX_VERSION)));
    conn.on("data", (data: Buffer) => {
      if (settled) return; // a greeted master sends nothing more unasked
      buffered = Buffer.concat([buffered, data]);
      if (buffered.length < 4) return;
      const length = buffered.readUInt32BE(0);
      if (length < 4 || length > PACKET_LIMIT) return settle(false);
      if (buffered.length < 4 + length) return;
      settle(answer(buffered.subarray(4, 4 + length), false) === "hello");
    });
    conn.on("error", () => settle(false));
    // Once held, the end of the connection is the end of the master (or of our hold).
    conn.on("close", () => (held ? onEnd() : settle(false)));
  });
}

/** What one packet from the master means: its hello, our answer, or nothing for us. */
function answer(body: Buffer, greeted: boolean): TerminateOutcome | "hello" | undefined {
  const type = body.readUInt32BE(0);
  if (!greeted) {
    if (type !== MUX_MSG_HELLO || body.length < 8) {
      return { status: "failed", why: "not an ssh master (no hello)" };
    }
    const version = body.readUInt32BE(4);
    if (version !== MUX_VERSION) {
      return {
        status: "failed",
        why: `the master speaks mux protocol ${version}, not ${MUX_VERSION}`,
      };
    }
    return "hello";
  }
  if (body.length < 8 || body.readUInt32BE(4) !== REQUEST_ID) return undefined;
  if (type === MUX_S_OK) return { status: "terminated" };
  if (type === MUX_S_PERMISSION_DENIED || type === MUX_S_FAILURE) {
    const said = reason(body.subarray(8));
    const what = type === MUX_S_PERMISSION_DENIED ? "refused" : "failed";
    return { status: "failed", why: `the master ${what}${said ? `: ${said}` : ""}` };
  }
  return undefined;
}

/** An SSH string (uint32 length, bytes) as text without control characters, cut short. */
function reason(bytes: Buffer): string {
  if (bytes.length < 4) return "";
  const length = Math.min(bytes.readUInt32BE(0), bytes.length - 4, 200);
  return withoutControls(bytes.subarray(4, 4 + length).toString("utf8"));
}

function packet(type: number, value: number): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt32BE(8, 0);
  out.writeUInt32BE(type, 4);
  out.writeUInt32BE(value, 8);
  return out;
}

/**
 * The control sockets whose path is `prefix` followed by ssh's `%C` (hex): the masters a
 * ControlPath of `PREFIX%C` made. ssh's temporary names (`PATH.RANDOM`) and anything that is
 * not a socket are left out; a directory that is not there holds none.
 */
export async function controlSockets(prefix: string): Promise<string[]> {
  const dir = dirname(prefix);
  const start = basename(prefix);
  const names = await readdir(dir).catch(() => [] as string[]);
  const candidates = names
    .filter((n) => n.startsWith(start) && /^[0-9a-f]+$/.test(n.slice(start.length)))
    .map((n) => join(dir, n));
  const sockets: string[] = [];
  for (const path of candidates) {
    const st = await lstat(path).catch(() => undefined);
    if (st?.isSocket()) sockets.push(path);
  }
  return sockets;
}

/**
 * Ends every master listening under one of `prefixes` (see controlSockets); never rejects. A
 * master that agreed to end is waited for until it removed its socket, as it does on its way
 * out (at most MASTER_EXIT_WAIT): the command that started it does not end before it.
 */
export async function terminateMasters(prefixes: readonly string[]): Promise<TerminateOutcome[]> {
  const sockets = (await Promise.all(prefixes.map(controlSockets))).flat();
  return mapLimit(sockets, CONCURRENCY, async (socket) => {
    const outcome = await terminateMaster(socket);
    if (outcome.status === "terminated") await socketGone(socket, MASTER_EXIT_WAIT);
    return outcome;
  });
}

/** Ms a master that agreed to end is given to remove its socket and exit. */
const MASTER_EXIT_WAIT = 1000;

/** Resolves once nothing is at `path`, or `ms` passed. */
async function socketGone(path: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if ((await lstat(path).catch(() => undefined)) === undefined) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
