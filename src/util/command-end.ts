// Work that must be done when a CLI command ends, whatever it did: stopping the ssh masters it
// started, so that the process (and the machine) is left with nothing running. Registered by
// the modules that start such things, run by the CLI once the command returns, bounded.
type Cleanup = () => Promise<void>;

const cleanups = new Set<Cleanup>();

/** Registers `cleanup` to run when the command ends (once, however often it is registered). */
export function onCommandEnd(cleanup: Cleanup): void {
  cleanups.add(cleanup);
}

/** Runs every registered cleanup, at most `ms` in all; a failing cleanup does not stop others. */
export async function runCommandEnd(ms = 10_000): Promise<void> {
  const running = [...cleanups].map((c) => c().catch(() => undefined));
  cleanups.clear();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([Promise.all(running), deadline]);
  clearTimeout(timer);
}
