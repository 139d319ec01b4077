// How long an AWS SDK client (S3, SSM) waits on its connections. The SDK's defaults have no
// timer at all: a server that accepts a connection and then stops answering, or stops sending
// a body halfway, would hold a deploy, an agent's poll or a dashboard's reader for ever. Each
// request is bounded instead, and the retry strategies bound the attempts.

/** Connecting, and a connection that sends nothing, at most this long (milliseconds). */
export interface AwsTimeouts {
  /** Establishing the TCP (and TLS) connection. */
  readonly connectMs: number;
  /**
   * A connection with no byte moving either way: waiting for an answer's headers, or in the
   * middle of its body. Not a bound on a whole request: a large upload or download that keeps
   * moving goes on (the AWS CLI's read timeout is the same 60 s).
   */
  readonly idleMs: number;
}

export const AWS_TIMEOUTS: AwsTimeouts = { connectMs: 10_000, idleMs: 60_000 };

/** The SDK client's `requestHandler` setting for `timeouts`. */
export function awsRequestHandler(timeouts: AwsTimeouts = AWS_TIMEOUTS): {
  readonly connectionTimeout: number;
  readonly socketTimeout: number;
} {
  return { connectionTimeout: timeouts.connectMs, socketTimeout: timeouts.idleMs };
}
