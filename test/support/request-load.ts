// Traffic for the lab's example service while a test bakes a rollout: GET /work on each host,
// one request at a time per host every few tens of milliseconds, until stopped or a time bound
// passes (so a test that fails midway never leaves it running).
import { setTimeout as delay } from "node:timers/promises";

export interface RequestLoad {
  /** Requests answered so far, by host address and status (0: no answer). */
  readonly answered: () => ReadonlyMap<string, ReadonlyMap<number, number>>;
  readonly stop: () => Promise<void>;
}

export function startRequestLoad(
  addresses: readonly string[],
  options: { readonly everyMs?: number; readonly forMs?: number } = {},
): RequestLoad {
  const every = options.everyMs ?? 40;
  const stop = new AbortController();
  const bound = setTimeout(() => stop.abort(), options.forMs ?? 600_000);
  bound.unref();
  const counts = new Map(addresses.map((a) => [a, new Map<number, number>()]));
  const loops = addresses.map(async (address) => {
    const seen = counts.get(address) as Map<number, number>;
    while (!stop.signal.aborted) {
      const status = await fetch(`http://${address}/work`, {
        signal: AbortSignal.any([stop.signal, AbortSignal.timeout(2000)]),
      })
        .then(async (r) => {
          await r.body?.cancel();
          return r.status;
        })
        .catch(() => 0);
      if (stop.signal.aborted) break;
      seen.set(status, (seen.get(status) ?? 0) + 1);
      await delay(every, undefined, { signal: stop.signal }).catch(() => {});
    }
  });
  return {
    answered: () => counts,
    stop: async () => {
      stop.abort();
      clearTimeout(bound);
      await Promise.all(loops);
    },
  };
}
