// Traffic for the lab's example service while a test bakes a rollout: GET /work on each host,
// one request begun every few tens of milliseconds, until stopped or a time bound passes (so a
// test that fails midway never leaves it running). Up to four are in flight at once per host: on
// a loaded machine a request takes hundreds of milliseconds, and one at a time would leave a
// bake's window of a few seconds a handful of requests, where one error doubles a ratio.
import { setTimeout as delay } from "node:timers/promises";

export interface RequestLoad {
  /** Requests answered so far, by host address and status (0: no answer). */
  readonly answered: () => ReadonlyMap<string, ReadonlyMap<number, number>>;
  readonly stop: () => Promise<void>;
}

/** Requests in flight at once to one host, at most. */
const IN_FLIGHT = 4;

export function startRequestLoad(
  addresses: readonly string[],
  options: { readonly everyMs?: number; readonly forMs?: number } = {},
): RequestLoad {
  const every = options.everyMs ?? 40;
  const stop = new AbortController();
  const bound = setTimeout(() => stop.abort(), options.forMs ?? 600_000);
  bound.unref();
  const counts = new Map(addresses.map((a) => [a, new Map<number, number>()]));
  const request = (address: string): Promise<number> =>
    fetch(`http://${address}/work`, {
      signal: AbortSignal.any([stop.signal, AbortSignal.timeout(2000)]),
    })
      .then(async (r) => {
        await r.body?.cancel();
        return r.status;
      })
      .catch(() => 0);
  const loops = addresses.map(async (address) => {
    const seen = counts.get(address) as Map<number, number>;
    const inFlight = new Set<Promise<void>>();
    while (!stop.signal.aborted) {
      if (inFlight.size >= IN_FLIGHT) {
        await Promise.race(inFlight);
        continue;
      }
      const one: Promise<void> = request(address).then((status) => {
        inFlight.delete(one);
        if (!stop.signal.aborted) seen.set(status, (seen.get(status) ?? 0) + 1);
      });
      inFlight.add(one);
      await delay(every, undefined, { signal: stop.signal }).catch(() => {});
    }
    await Promise.all(inFlight);
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
