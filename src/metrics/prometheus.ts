// The Prometheus a bake's analysis asks: one instant query over its HTTP API (/api/v1/query),
// within a deadline and a size limit on the answer, with the fleet's bearer token (never in a
// message). An answer that is not one number is no value, with why: the analysis's no-data rule
// decides what that means. The tests meet this seam with a real Prometheus.

import { setTimeout as sleep } from "node:timers/promises";
import { type Deadline, eitherSignal, startDeadline, timedOut } from "../util/deadline.js";
import { oneLine, quoted } from "../util/text.js";

/** One instant query's answer: its one value, or why it has none. */
export type QueryAnswer =
  | { readonly value: number }
  | {
      readonly value: null;
      readonly why: string;
      /**
       * Prometheus answered the query well, with nothing measured (no series, NaN): the query's
       * labels, or the scraping, are what to look at. Otherwise the answer itself was at fault.
       */
      readonly nothingMeasured?: true;
    };

/** What the analysis asks of a metrics server. */
export interface MetricsSource {
  /** Where it is (for messages: no credentials). */
  readonly url: string;
  /** Seconds a query may take, all told (`prometheus.timeout`). */
  readonly timeout: number;
  /** One instant query, at the current time; never rejects. */
  query(promql: string, signal?: AbortSignal): Promise<QueryAnswer>;
}

export interface PrometheusOptions {
  /** Its base URL (no trailing slash, no credentials). */
  readonly url: string;
  /** Sent as `Authorization: Bearer …`; never shown. */
  readonly token?: string | undefined;
  /** Seconds a query may take, all told. */
  readonly timeout: number;
}

/** The most of an answer read: one value per host is a few hundred bytes. */
export const ANSWER_LIMIT = 1024 * 1024;
/** The most of an error's text a message keeps. */
const ERROR_SHOWN = 300;

/** A client of the Prometheus at `options.url`. */
export function prometheusClient(options: PrometheusOptions): MetricsSource {
  return {
    url: options.url,
    timeout: options.timeout,
    query: (promql, signal) => instantQuery(options, promql, signal),
  };
}

/** Attempts of one query at most, within its timeout, when the failure may pass. */
export const QUERY_ATTEMPTS = 4;
/** Ms before the second attempt; doubled before each after it. */
const RETRY_PAUSE_MS = 250;
/** Statuses of a server (or a proxy before it) that is busy or restarting, asked again. */
const PASSING_STATUSES = new Set([429, 502, 503, 504]);

/**
 * One instant query, asked again (QUERY_ATTEMPTS at most, within the same timeout) when it got
 * no answer (a connection refused or cut) or a busy one: one blip of a Prometheus restarting
 * is no measurement of the host. A refusal, a bad query, or the deadline are not asked again.
 */
async function instantQuery(
  options: PrometheusOptions,
  promql: string,
  signal: AbortSignal | undefined,
): Promise<QueryAnswer> {
  const deadline = startDeadline(options.timeout * 1000);
  const stop = eitherSignal(deadline, signal);
  try {
    for (let attempt = 1; ; attempt++) {
      const asked = await askOnce(options, promql, stop, deadline, signal);
      if (!asked.again) return asked.answer;
      const pause = RETRY_PAUSE_MS * 2 ** (attempt - 1);
      const resting = attempt < QUERY_ATTEMPTS && (await rest(pause, stop));
      if (!resting) {
        const { answer } = asked;
        return answer.value === null && attempt > 1
          ? { ...answer, why: `${answer.why} (asked ${attempt} times)` }
          : answer;
      }
    }
  } finally {
    deadline.clear();
  }
}

/** Waits `ms`; false when `signal` aborted first. */
async function rest(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** One attempt of a query: its answer, and whether asking again may get a better one. */
async function askOnce(
  options: PrometheusOptions,
  promql: string,
  stop: AbortSignal,
  deadline: Deadline,
  signal: AbortSignal | undefined,
): Promise<{ readonly answer: QueryAnswer; readonly again: boolean }> {
  const endpoint = `${options.url}/api/v1/query`;
  try {
    const response = await fetch(endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
        ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      },
      body: new URLSearchParams({ query: promql }).toString(),
      // A redirect would carry the token elsewhere: refused.
      redirect: "error",
      signal: stop,
    });
    const text = await bodyText(response.body, ANSWER_LIMIT, stop);
    if (text === undefined) {
      return {
        answer: noValue(`${endpoint} answered more than ${ANSWER_LIMIT} bytes`),
        again: false,
      };
    }
    // Masked before anything is cut to be shown (a token cut short would no longer match), and
    // again in what the JSON decodes to (an escape, `\/` or `\u0026`, hid it from the first).
    const answer = answerOf(response.status, masked(text, options.token), endpoint, options.token);
    return { answer, again: PASSING_STATUSES.has(response.status) };
  } catch (err) {
    // The caller's deadline (a bake round's) is a deadline too.
    if (deadline.signal.aborted || (signal !== undefined && timedOut(signal))) {
      return {
        answer: noValue(`${endpoint} did not answer within ${options.timeout}s`),
        again: false,
      };
    }
    if (signal?.aborted) return { answer: noValue("interrupted"), again: false };
    const cause =
      (err as Error).cause instanceof Error ? ((err as Error).cause as Error) : undefined;
    const said = cause?.message ?? (err as Error).message;
    if (said === "unexpected redirect") {
      return {
        answer: noValue(
          `${endpoint} answered with a redirect, which is refused (it would carry the bearer token elsewhere): give prometheus.url as the address it redirects to`,
        ),
        again: false,
      };
    }
    // No answer at all (refused, cut, reset): asked again.
    return { answer: noValue(`${endpoint}: ${masked(said, options.token)}`), again: true };
  }
}

/**
 * What Prometheus' answer (status and body) says: one value, or why not; nothing it shows says
 * `token`, in any form `masked` knows. Pure.
 */
export function answerOf(
  status: number,
  text: string,
  endpoint: string,
  token?: string,
): QueryAnswer {
  const shown = (said: string) => shownText(masked(said, token));
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    // A refusal's page is not shown: what a proxy echoes of the request is the credential's.
    if (status === 401 || status === 403) {
      return noValue(
        `${endpoint} answered ${status} (refused: check prometheus.bearerTokenFile, and that the token may query); its page, no JSON, is not shown`,
      );
    }
    return noValue(`${endpoint} answered ${status} with no JSON: ${shown(text)}`);
  }
  const b = body as {
    status?: unknown;
    error?: unknown;
    errorType?: unknown;
    data?: unknown;
    warnings?: unknown;
  };
  if (b.status !== "success" && b.status !== "error") {
    return noValue(
      `${endpoint} answered ${status} with JSON that is no Prometheus answer (no "status"): is prometheus.url Prometheus' own address?`,
    );
  }
  if (b.status !== "success") {
    const error = typeof b.error === "string" ? b.error : `status ${status}`;
    const type = typeof b.errorType === "string" ? `${b.errorType}: ` : "";
    return noValue(`Prometheus refused the query (${shown(type + error)})`);
  }
  // Prometheus answers a success with 200: a success body under another status is something
  // else's (a proxy's, a cache's replay), no value to judge a host by.
  if (status < 200 || status > 299) {
    return noValue(
      `${endpoint} answered ${status} with a success body: not Prometheus' own answer (a proxy's or a cache's?), so no value`,
    );
  }
  // A partial answer (a remote store or a Thanos store that did not answer) is no value to judge
  // a host by: the no-data rule decides.
  // Warnings that are not a list (no Prometheus sends that) count as warnings all the same.
  const warnings = Array.isArray(b.warnings) ? b.warnings : b.warnings == null ? [] : [b.warnings];
  if (warnings.length > 0) {
    const said = warnings
      .slice(0, 3)
      .map((w) => (typeof w === "string" ? w : JSON.stringify(w)))
      .join("; ");
    return noValue(
      `Prometheus answered with warnings, so its value may rest on partial data (${shown(said)})`,
    );
  }
  const data = b.data as { resultType?: unknown; result?: unknown } | undefined;
  switch (data?.resultType) {
    case "scalar":
      return sampleValue(data.result);
    case "vector": {
      const result = data.result;
      if (!Array.isArray(result)) {
        return noValue(
          `the answer's data.result is not a list of series (it is ${jsonKind(result)}): not Prometheus' own answer`,
        );
      }
      if (result.length === 0) return nothingMeasured("the query answered no series");
      if (result.length > 1) {
        return noValue(
          `the query answered ${result.length} series; it must answer one value for the host (aggregate it: sum(…), max(…))`,
        );
      }
      const series: unknown = result[0];
      if (typeof series !== "object" || series === null || Array.isArray(series)) {
        return noValue(
          `the answer's series is not an object (it is ${jsonKind(series)}): not Prometheus' own answer`,
        );
      }
      return sampleValue((series as { value?: unknown }).value);
    }
    default:
      return noValue(
        `the query answered a ${shown(String(data?.resultType))}; it must answer one value (an instant vector of one series, or a scalar)`,
      );
  }
}

/** A sample's value as Prometheus writes it: a float, NaN, or an infinity. */
const FLOAT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * `[time, "value"]` as a number. NaN is no value (0/0: nothing counted yet); +Inf and -Inf are
 * values, judged as any (x/0 with x > 0: every request failed, say, is above any maximum).
 */
function sampleValue(sample: unknown): QueryAnswer {
  const text = Array.isArray(sample) ? sample[1] : undefined;
  if (typeof text !== "string") return noValue("the answer holds no value");
  if (text === "NaN") return nothingMeasured("NaN (e.g. 0/0: nothing counted yet)");
  if (text === "+Inf" || text === "Inf") return { value: Number.POSITIVE_INFINITY };
  if (text === "-Inf") return { value: Number.NEGATIVE_INFINITY };
  if (!FLOAT.test(text)) return noValue(`the answer's value ${quoted(text)} is not a number`);
  return { value: Number(text) };
}

/**
 * `text` with the token replaced, should anything echo it: as is, URL-encoded, escaped as JSON
 * or HTML write it, or within base64 or base64url (as an auth proxy shows an Authorization
 * header it refused).
 */
export function masked(text: string, token: string | undefined): string {
  if (token === undefined || token === "") return text;
  let hidden = text;
  for (const form of tokenForms(token)) hidden = hidden.replaceAll(form, () => "[token]");
  return hidden;
}

/** The shortest run of a token's base64 that is masked: shorter ones could be anything. */
const BASE64_CORE_MIN = 8;

/**
 * The forms a token takes in an echo, longest first. Within base64, the token's characters
 * depend on where its bytes fall in the 3-byte groups: for each of the three offsets, the
 * characters that its bytes alone decide (the groups wholly within it) are in every encoding
 * of a text that holds it at that offset ("Bearer TOKEN", a whole header line).
 */
function tokenForms(token: string): string[] {
  const bytes = Buffer.from(token, "utf8");
  const forms = new Set([token, encodeURIComponent(token), ...escapedForms(token)]);
  for (const encoding of ["base64", "base64url"] as const) {
    for (let offset = 0; offset < 3; offset++) {
      const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString(encoding);
      const start = offset === 0 ? 0 : 4;
      const end = Math.floor((offset + bytes.length) / 3) * 4;
      if (end - start >= BASE64_CORE_MIN) forms.add(encoded.slice(start, end));
    }
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

/**
 * The token as JSON encoders write it within a string (plain; `/` as `\/`, as PHP's and Java's
 * do; `<`, `>`, `&` as `\u003c`…, as Go's does) and as HTML escapes it (`&amp;`, `&lt;`…).
 */
function escapedForms(token: string): string[] {
  const json = JSON.stringify(token).slice(1, -1);
  const slashed = json.replaceAll("/", "\\/");
  const goSafe = (text: string) =>
    text.replaceAll("<", "\\u003c").replaceAll(">", "\\u003e").replaceAll("&", "\\u0026");
  const html = (quote: string, apostrophe: string) =>
    token
      .replaceAll("&", "&amp;")
      .replaceAll("<", "&lt;")
      .replaceAll(">", "&gt;")
      .replaceAll('"', quote)
      .replaceAll("'", apostrophe);
  return [
    json,
    slashed,
    goSafe(json),
    goSafe(slashed),
    html("&quot;", "&#39;"),
    html("&#34;", "&#x27;"),
  ];
}

/** What kind of JSON value `value` is, for a message. */
function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function noValue(why: string): QueryAnswer {
  return { value: null, why };
}

function nothingMeasured(why: string): QueryAnswer {
  return { value: null, why, nothingMeasured: true };
}

function shownText(text: string): string {
  const clean = oneLine(text.trim());
  return clean.length > ERROR_SHOWN ? `${clean.slice(0, ERROR_SHOWN)}…` : clean;
}

/** The body as text, or undefined past `limit` bytes (the rest is never read). */
/**
 * The body, at most `limit` bytes (undefined past them), read until `signal` aborts (then it
 * throws the signal's reason). The signal is watched here, not left to fetch: once fetch has
 * answered with the headers, the request that follows the signal for it may be collected by the
 * next garbage collection, and an abort then no longer reaches the body (measured on Node 20: a
 * body that never comes held a 2 s deadline past 10 s whenever a collection ran meanwhile).
 */
async function bodyText(
  stream: ReadableStream<Uint8Array> | null,
  limit: number,
  signal: AbortSignal,
): Promise<string | undefined> {
  if (stream === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  // A cancel ends the read under way (done), whatever the server does.
  const cancel = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      signal.throwIfAborted();
      const { done, value } = await reader.read();
      signal.throwIfAborted();
      if (done) break;
      size += value.byteLength;
      if (size > limit) return undefined;
      chunks.push(value);
    }
  } finally {
    signal.removeEventListener("abort", cancel);
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).toString("utf8");
}
