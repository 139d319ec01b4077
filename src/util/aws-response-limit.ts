// What an AWS SDK client (S3, SSM) reads of an answer it takes whole: a listing, an error, SSM's
// JSON. The SDK reads such a body into memory with no limit, so an endpoint that answered at
// length (a listing of gigabytes: 64 MiB of it took 2.5 GB of memory) would exhaust a deployer
// or an agent. Each is cut past ANSWER_LIMIT bytes instead. An answer whose body the caller
// streams (S3's GetObject, when it found the object) is the caller's to bound, and passes.
import type { Readable } from "node:stream";
import { pipeline, Transform } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SSMClient } from "@aws-sdk/client-ssm";
import { OperationError } from "../errors.js";

/**
 * The most bytes of an answer read whole: far above real ones (a listing of 1,000 keys is
 * about 300 KB; SSM's largest, a command's invocations, a few hundred KB).
 */
export const ANSWER_LIMIT = 16 * 1024 * 1024;

/**
 * Cuts, on `client`, every answer body read whole past `limit` bytes; `streamed`: the commands
 * whose successful answer's body the caller reads as a stream (left as it is).
 */
export function limitAnswers(
  client: S3Client | SSMClient,
  streamed: ReadonlySet<string> = new Set(),
  limit = ANSWER_LIMIT,
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
      response.body = pipeline(
        body,
        byteCap(limit, context.commandName ?? "an AWS call"),
        () => {},
      );
      return result;
    },
    // Innermost of the deserialize step: the raw answer, before the SDK reads it.
    { step: "deserialize", priority: "low", name: "nixshipAnswerLimit" },
  );
}

function byteCap(limit: number, what: string): Transform {
  let seen = 0;
  return new Transform({
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
}
