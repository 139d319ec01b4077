// An HTTP health check of a test's own, which the deployer asks for each host (a policy's
// `http://GATEWAY:PORT/{name}`, on the lab's own address of the deployer: a check's URL may not
// name the deployer's loopback): it answers 200, and can first do something, once, when a
// given host's check comes (land another deploy, kill the deployer). What lab tests use to act
// at an exact point of a rollout.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface CheckServer {
  /** The check's URL for a fleet's policy: `{name}` is the host's name. */
  readonly url: string;
  /** The hosts whose check was asked, in order. */
  readonly asked: readonly string[];
  /**
   * Runs `action` when `host`'s check next comes; that check, and every other of the host that
   * comes while it runs, is answered once it ends.
   */
  onCheck(host: string, action: () => Promise<void>): void;
  close(): void;
}

/** Starts the check on `address`: the lab's gateway, the deployer's address on the lab. */
export async function startCheckServer(address: string): Promise<CheckServer> {
  const asked: string[] = [];
  const actions = new Map<string, () => Promise<void>>();
  // An action under way holds every check of its host until it ends: the deployer gives each
  // attempt of a check at most 5 s (host/http-check.ts), and asks again.
  const running = new Map<string, Promise<void>>();
  const server = createServer((req, res) => {
    const host = (req.url ?? "").slice(1);
    asked.push(host);
    const action = actions.get(host);
    actions.delete(host);
    if (action !== undefined) {
      const done = action().finally(() => running.delete(host));
      running.set(host, done);
    }
    const wait = running.get(host);
    void (async () => {
      await wait?.catch(() => {});
      res.end("ok");
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${address}:${port}/{name}`,
    asked,
    onCheck: (host, action) => actions.set(host, action),
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The fleet document's policy with a canary of one host and `check` asked for every host. */
export function checkedPolicy(
  policy: unknown,
  check: CheckServer,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    ...(policy as object),
    canary: 1,
    health: { http: [{ url: check.url, timeout: 120 }] },
    ...extra,
  };
}
