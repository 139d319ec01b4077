// What must be written before a process that is made to stop at once ends (a second interrupt):
// a rollout's record says where the deploy stopped instead of "running" for good. Writers
// register while they live; the interrupt trap (cli/interrupts.ts) runs them, bounded.

const lastWords = new Set<() => Promise<unknown>>();

/** Registers `write`; the returned function removes it. */
export function onLastWord(write: () => Promise<unknown>): () => void {
  lastWords.add(write);
  return () => lastWords.delete(write);
}

/** Whether any writer is registered. */
export function lastWordsPending(): boolean {
  return lastWords.size > 0;
}

/** Runs every registered writer at once, and settles when all did or after `ms`, whichever first. */
export async function sayLastWords(ms: number): Promise<void> {
  const written = Promise.allSettled([...lastWords].map((write) => write()));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([written, deadline]);
  clearTimeout(timer);
}
