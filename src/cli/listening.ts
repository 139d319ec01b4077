// What a service (`cache serve`, `dashboard`) says once it listens: a line on stderr, and with
// --json one JSON object on stdout, so that a script that asked for port 0 learns the port.
import { terminalJson } from "../util/text.js";
import type { CliIO } from "./command.js";

export function announceListening(
  url: string,
  io: Pick<CliIO, "stdout" | "stderr">,
  json: boolean,
): void {
  io.stderr.write(`listening on ${url}\n`);
  if (json) io.stdout.write(`${terminalJson({ listening: url })}\n`);
}
