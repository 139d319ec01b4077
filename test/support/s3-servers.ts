// The S3 servers that S3 tests run against, each in turn: s3rver, with the conditional writes it
// lacks added in front (s3-server.ts), and moto's server, which has its own (moto-server.ts).
import { startMotoServer } from "../../support/moto-server.js";
import { type S3Bucket, startS3Server } from "../../support/s3-server.js";

export interface S3ServerKind {
  readonly name: S3Bucket["server"];
  /** A server on 127.0.0.1 with `bucket` made; close it when done. */
  readonly start: (bucket?: string) => Promise<S3Bucket>;
}

export const S3_SERVERS: readonly S3ServerKind[] = [
  { name: "s3rver", start: (bucket) => startS3Server(bucket) },
  { name: "moto", start: (bucket) => startMotoServer(bucket) },
];
