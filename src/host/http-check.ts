// HTTP health checks from the deployer: GET a URL until it answers with the expected status
// or the timeout passes (a service that just started may need a moment); with retry false, the
// first answer (or refusal) is final.
import { withoutControls } from "../util/text.js";

export interface HttpCheckResult {
  readonly ok: boolean;
  readonly url: string;
  /** The last status seen (undefined: no answer at all). */
  readonly status: number | undefined;
  readonly message: string;
}

/** The most of a failed answer's body that is read (the rest is never fetched)… */
const BODY_READ_BYTES = 4096;
/** …and the most of it a message shows. */
const BODY_SHOWN_CHARS = 200;

export async function httpCheck(
  url: string,
  expectStatus: number,
  timeoutSeconds: number,
  signal?: AbortSignal,
  options: { readonly retry?: boolean } = {},
): Promise<HttpCheckResult> {
  const retry = options.retry !== false;
  const deadline = Date.now() + timeoutSeconds * 1000;
  let status: number | undefined;
  let body = "";
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
      if (status === expectStatus) {
        await response.body?.cancel();
        return { ok: true, url, status, message: `${url} answered ${status}` };
      }
      body = await bodyStart(response.body);
    } catch (err) {
      lastError =
        (err as Error).cause instanceof Error
          ? ((err as Error).cause as Error).message
          : (err as Error).message;
    }
    if (!retry || signal?.aborted || Date.now() + 250 >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const seen =
    status === undefined
      ? `no answer (${lastError || "timed out"})`
      : `status ${status}${body && `: ${body}`}`;
  return {
    ok: false,
    url,
    status,
    message: retry
      ? `${url}: expected status ${expectStatus} within ${timeoutSeconds}s, got ${seen}`
      : `${url}: expected status ${expectStatus}, got ${seen} (retry false: the first answer counts)`,
  };
}

/**
 * The start of a body as a message shows it: quoted (JSON), at most BODY_SHOWN_CHARS characters
 * of its first BODY_READ_BYTES bytes, control characters replaced, "…" after it when there is
 * more; "" for an empty body. Never throws: a body that fails midway gives what came.
 */
async function bodyStart(stream: ReadableStream<Uint8Array> | null): Promise<string> {
  if (stream === null) return "";
  let bytes = new Uint8Array(BODY_READ_BYTES);
  let size = 0;
  try {
    // A BYOB reader fills one buffer of BODY_READ_BYTES and takes no more from the stream.
    const reader = stream.getReader({ mode: "byob" });
    try {
      while (size < BODY_READ_BYTES) {
        const { done, value } = await reader.read(bytes.subarray(size));
        if (value === undefined) break;
        bytes = new Uint8Array(value.buffer);
        size += value.byteLength;
        if (done) break;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  } catch {
    // What came before the failure is shown; a stream that cannot be read so is dropped.
    await stream.cancel().catch(() => {});
  }
  const chars = [...new TextDecoder().decode(bytes.subarray(0, size)).trim()];
  if (chars.length === 0) return "";
  const more = chars.length > BODY_SHOWN_CHARS || size === BODY_READ_BYTES;
  return `${JSON.stringify(withoutControls(chars.slice(0, BODY_SHOWN_CHARS).join("")))}${more ? "…" : ""}`;
}
