// HTTP health checks from the deployer: GET a URL until it answers with the expected status
// or the timeout passes (a service that just started may need a moment).
export interface HttpCheckResult {
  readonly ok: boolean;
  readonly url: string;
  /** The last status seen (undefined: no answer at all). */
  readonly status: number | undefined;
  readonly message: string;
}

export async function httpCheck(
  url: string,
  expectStatus: number,
  timeoutSeconds: number,
  signal?: AbortSignal,
): Promise<HttpCheckResult> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let status: number | undefined;
  let lastError = "";
  for (;;) {
    const left = deadline - Date.now();
    try {
      const response = await fetch(url, {
        signal: AbortSignal.any([
          AbortSignal.timeout(Math.max(100, Math.min(left, 5000))),
          ...(signal ? [signal] : []),
        ]),
        redirect: "manual",
      });
      status = response.status;
      await response.body?.cancel();
      if (status === expectStatus)
        return { ok: true, url, status, message: `${url} answered ${status}` };
    } catch (err) {
      lastError =
        (err as Error).cause instanceof Error
          ? ((err as Error).cause as Error).message
          : (err as Error).message;
    }
    if (signal?.aborted || Date.now() + 250 >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const seen =
    status === undefined ? `no answer (${lastError || "timed out"})` : `status ${status}`;
  return {
    ok: false,
    url,
    status,
    message: `${url}: expected status ${expectStatus} within ${timeoutSeconds}s, got ${seen}`,
  };
}
