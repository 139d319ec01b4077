// Before a host is activated over ssh: can the deployer still open a NEW connection to it?
// The confirmation (magic rollback) needs one, while the activation itself would run over the
// shared connection, which outlives an sshd that died. A host that cannot take a new
// connection is failed before anything changes on it.
//
// The check costs no SSH handshake: ssh's settings for the destination (`ssh -G`, local, read
// by the caller) say where it connects, and sshd's greeting ("SSH-2.0-…") on a fresh TCP
// connection proves it accepts connections. Behind a ProxyJump or ProxyCommand there is no
// direct route, so a whole new ssh connection is made.
import { connect } from "node:net";
import { withDeadline } from "../util/deadline.js";
import { runOverSsh, type SshTarget, unreachable } from "./ssh-transport.js";

/** Seconds the check may take. */
const PREFLIGHT_TIMEOUT = 10;
/** Bytes of greeting read at most (RFC 4253 allows 255 per line). */
const GREETING_LIMIT = 1024;

/**
 * undefined when a new connection can be made; else why not, naming the host. `settings` are
 * ssh's effective settings for the target (`sshSettings`).
 */
export async function checkNewConnection(
  target: SshTarget,
  settings: ReadonlyMap<string, string>,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const route = routeOf(settings);
  if (route === undefined) {
    const r = await withDeadline(PREFLIGHT_TIMEOUT * 1000, signal, (bounded) =>
      runOverSsh(target, "exit 0", { fresh: true, signal: bounded }),
    );
    return r.code === 0 ? undefined : cannot(target, unreachable(r.code, r.stderr));
  }
  const greeting = await readGreeting(route.host, route.port, signal);
  return greeting.ok ? undefined : cannot(target, `${route.host}:${route.port}: ${greeting.error}`);
}

function cannot(target: SshTarget, why: string): string {
  return `${target.name}: no new ssh connection can be made (${why}); the confirmation after the switch needs one, so the host was not activated`;
}

/** Where ssh would connect (host, port), or undefined when it goes through a proxy. */
function routeOf(
  settings: ReadonlyMap<string, string>,
): { host: string; port: number } | undefined {
  const proxied = ["proxyjump", "proxycommand"].some((k) => {
    const v = settings.get(k);
    return v !== undefined && v !== "none";
  });
  const host = settings.get("hostname");
  const port = Number(settings.get("port") ?? "22");
  if (proxied || !host || !Number.isSafeInteger(port)) return undefined;
  return { host, port };
}

/** Opens a TCP connection and reads sshd's greeting line; bounded in time and bytes. */
function readGreeting(
  host: string,
  port: number,
  signal?: AbortSignal,
): Promise<{ ok: true } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let text = "";
    const finish = (outcome: { ok: true } | { ok: false; error: string }) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(outcome);
    };
    const onAbort = () => finish({ ok: false, error: "interrupted" });
    const timer = setTimeout(
      () => finish({ ok: false, error: `no greeting within ${PREFLIGHT_TIMEOUT}s` }),
      PREFLIGHT_TIMEOUT * 1000,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      text += d;
      const line = text.split("\n")[0] ?? "";
      if (text.includes("\n") || text.length >= GREETING_LIMIT) {
        finish(
          line.startsWith("SSH-")
            ? { ok: true }
            : {
                ok: false,
                error: `not an ssh server (it said ${JSON.stringify(line.slice(0, 60))})`,
              },
        );
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) =>
      finish({ ok: false, error: err.code ?? err.message }),
    );
    socket.on("close", () =>
      finish({ ok: false, error: "the connection closed before sshd spoke" }),
    );
  });
}
