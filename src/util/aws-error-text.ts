// What an AWS SDK error (S3, SSM) says, fit to show: never the deployer's own credentials (a
// server's message may echo what it was sent), and not the SDK's pointer to its internals when
// an answer did not parse (an endpoint that is not the service: a proxy's page, a typo'd port).

/** The credentials the SDK takes from the environment, long enough to tell from other text. */
const OWN_CREDENTIALS = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] as const;

/** `text` with every credential of the environment's replaced by `***`. */
export function withoutOwnCredentials(text: string): string {
  let shown = text;
  for (const name of OWN_CREDENTIALS) {
    const value = process.env[name];
    if (value !== undefined && value.length >= 8) shown = shown.split(value).join("***");
  }
  return shown;
}

/** The SDK's words when an answer did not parse, which name a field of its error object. */
const UNPARSED =
  /\s*Deserialization error: to see the raw response, inspect the hidden field \{error\}\.\$response on this object\.?/;

/** The error's message, fit to show. */
export function awsErrorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return withoutOwnCredentials(
    message.replace(
      UNPARSED,
      " (the answer did not parse: the endpoint does not answer as AWS does)",
    ),
  );
}
