// What an AWS SDK client (S3, SSM) reads of an answer it takes whole: a listing, an error, SSM's
// JSON. The SDK reads such a body into memory with no limit and no deadline, so an endpoint that
// answered at length (a listing of gigabytes: 64 MiB of it took 2.5 GB of memory) would exhaust
// a deployer or an agent, and one that sent its body a byte within each idle timeout (a 404's
// body behind every read of an absent key) would hold it for ever. Each is cut past
// ANSWER_LIMIT bytes, and once it comes slower than an object's read may (byteCap), instead.
// An answer whose body the caller streams (S3's GetObject, when it found the object) is the
// caller's to bound, and passes.
import type { Readable } from "node:stream";
import { pipeline, Transform } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SSMClient } from "@aws-sdk/client-ssm";
import { OperationError } from "../errors.js";
import { AWS_TIMEOUTS, type AwsTimeouts } from "./aws-timeouts.js";
import { readDeadlineMs } from "./deadline.js";

/**
 * The most bytes of an answer read whole: far above real ones (a listing of 1,000 keys is
 * about 300 KB; SSM's largest, a command's invocations, a few hundred KB).
 */
export const ANSWER_LIMIT = 16 * 1024 * 1024;

/**
 * Cuts, on `client`, every answer body read whole past `limit` bytes, or once it comes slower
 * than readDeadlineMs allows (its grace: `timeouts.answerMs`); `streamed`:
 * the commands whose successful answer's body the caller reads as a stream (left as it is).
 */
export function limitAnswers(
  client: S3Client | SSMClient,
  streamed: ReadonlySet<string> = new Set(),
  {
    limit = ANSWER_LIMIT,
    timeouts = AWS_TIMEOUTS,
  }: { limit?: number; timeouts?: AwsTimeouts } = {},
): void {
  // One stack type for both clients: the middleware uses nothing of either service's own.
  (client.middlewareStack as S3Client["middlewareStack"]).add(
    (next, context) => async (args) => {
      const result = await next(args);
      const response = result.response as { statusCode?: number; body?: unknown };
      const ok = (response.statusCode ?? 0) >= 200 && (response.statusCode ?? 0) < 300;
      const body = response.body as Readable | undefined;
      if (
        (ok && streamed.has(context.commandName ?? "")) ||
        body === undefined ||
        typeof (body as { pipe?: unknown }).pipe !== "function"
      ) {
        return result;
      }
      const what = context.commandName ?? "an AWS call";
      response.body = pipeline(body, byteCap(limit, what, timeouts.answerMs), () => {});
      return result;
    },
    // Innermost of the deserialize step: the raw answer, before the SDK reads it.
    { step: "deserialize", priority: "low", name: "nixshipAnswerLimit" },
  );
}

/**
 * Passes at most `limit` bytes, at readDeadlineMs's pace: past `graceMs` from its start, the
 * bytes seen must have come at 128 KiB a second (a trickle ends about `graceMs` in; a large
 * answer that keeps moving goes on, at most readDeadlineMs(limit, graceMs) in all).
 */
function byteCap(limit: number, what: string, graceMs: number): Transform {
  let seen = 0;
  const started = Date.now();
  const cap: Transform = new Transform({
    flush(done) {
      clearTimeout(timer);
      done();
    },
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > limit) {
        done(
          new OperationError(
            "aws-answer-too-large",
            `${what}: the answer is more than ${limit} bytes, far more than such an answer holds: cut there`,
            { hint: "the endpoint (or a proxy on the way) is not answering as AWS does; check it" },
          ),
        );
      } else done(null, chunk);
    },
  });
  // Not a TimeoutError: the answer came (its status says what it is; a 404 is an absent key),
  // and asking again would only wait as long again.
  const check = (): void => {
    const elapsed = Date.now() - started;
    const allowed = readDeadlineMs(seen, graceMs);
    if (elapsed < allowed) {
      timer = setTimeout(check, allowed - elapsed).unref();
      return;
    }
    cap.destroy(
      new OperationError(
        "aws-answer-too-slow",
        `${what}: the answer's body came too slowly (${seen} bytes in ${Math.round(elapsed / 1000)} s after its headers; one read whole must come at 128 KiB a second past its first ${Math.round(graceMs / 1000)} s): stopped`,
        { hint: "the endpoint (or a proxy on the way) is not answering as AWS does; check it" },
      ),
    );
  };
  // The reader's own handles keep the process alive; the deadline alone does not.
  let timer = setTimeout(check, graceMs).unref();
  cap.on("close", () => clearTimeout(timer));
  return cap;
}

/** Whether `err` is this module's cut of an answer (too large, or too slow). */
export function isAnswerCut(err: unknown): err is OperationError {
  return (
    err instanceof OperationError &&
    (err.code === "aws-answer-too-large" || err.code === "aws-answer-too-slow")
  );
}
