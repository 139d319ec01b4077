// HTTP health checks from the deployer: GET a URL until it answers with the expected status
// or the timeout passes (a service that just started may need a moment); with retry false, the
// first answer (or refusal) is final. Asked with node:http, which the deployer has loaded
// already (its served cache): fetch's first request costs about 25 ms more CPU, loading undici.
import { get as getHttp, type IncomingMessage } from "node:http";
import { get as getHttps } from "node:https";
import { withDeadline } from "../util/deadline.js";
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
      // Each request may take the time left: a service that answers slowly but within the
      // check's timeout passes.
      const answer = await withDeadline(Math.max(100, left), signal, (bounded) =>
        getOnce(url, bounded, expectStatus),
      );
      status = answer.status;
      if (status === expectStatus) {
        return { ok: true, url, status, message: `${url} answered ${status}` };
      }
      body = bodyStart(answer.bodyStart);
      // A redirect is an answer: the check asks the URL it names, and follows none.
      if (answer.location !== undefined) {
        body = `redirect to ${JSON.stringify(withoutControls(answer.location.slice(0, BODY_SHOWN_CHARS)))}, not followed${body && `; ${body}`}`;
      }
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
 * One GET of `url` (no redirect followed, a connection of its own): its status and, unless it is
 * `expectStatus`, the first BODY_READ_BYTES bytes of its body (the rest is never read; a body
 * that fails midway gives what came). Rejects when no answer comes.
 */
function getOnce(
  url: string,
  signal: AbortSignal,
  expectStatus: number,
): Promise<{ status: number; bodyStart: Buffer; location?: string }> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith("https:") ? getHttps : getHttp;
    // Once an answer came, its end or a failure midway (the deadline's abort among them, which
    // the request reports) resolves with what came; before one, a failure is no answer.
    let answer: (() => void) | undefined;
    const answered = (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      answer = () => {
        res.destroy();
        const location = status >= 300 && status < 400 ? res.headers.location : undefined;
        resolve({
          status,
          bodyStart: Buffer.concat(chunks).subarray(0, BODY_READ_BYTES),
          ...(location === undefined ? {} : { location }),
        });
      };
      if (status === expectStatus) return answer();
      res.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= BODY_READ_BYTES) answer?.();
      });
      res.on("end", answer);
      res.on("error", answer);
      res.on("close", answer);
    };
    const request = get(
      url,
      { signal, agent: false, headers: { accept: "*/*", "user-agent": "nixship" } },
      answered,
    );
    request.on("error", (err) => (answer === undefined ? reject(err) : answer()));
  });
}

/**
 * The start of a body as a message shows it: quoted (JSON), at most BODY_SHOWN_CHARS characters
 * of its first BODY_READ_BYTES bytes, control characters replaced, "…" after it when there is
 * more; "" for an empty body.
 */
function bodyStart(bytes: Buffer): string {
  const chars = [...new TextDecoder().decode(bytes).trim()];
  if (chars.length === 0) return "";
  const more = chars.length > BODY_SHOWN_CHARS || bytes.length === BODY_READ_BYTES;
  return `${JSON.stringify(withoutControls(chars.slice(0, BODY_SHOWN_CHARS).join("")))}${more ? "…" : ""}`;
}
