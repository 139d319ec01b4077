// The nixship command line: picks the command from the leading words, runs it, and renders
// any fault once, here, with its hint and exit code.

import { NixshipError } from "../errors.js";
import {
  agentCommand,
  agentPauseCommand,
  agentResumeCommand,
  agentStatusCommand,
} from "./agent.js";
import { cacheServe } from "./cache-serve.js";
import type { CliIO, Command } from "./command.js";
import { deployCommand, planCommand } from "./deploy.js";
import { fetch } from "./fetch.js";
import { fleetFromTerraformCommand } from "./fleet-from-terraform.js";
import { buildCommand, rollbackCommand, statusCommand } from "./hosts.js";
import { keyGenerate, keyPublic } from "./key.js";
import {
  labDownCommand,
  labExecCommand,
  labListCommand,
  labSshConfigCommand,
  labUpCommand,
} from "./lab.js";
import { narDump, narLs, narRestore } from "./nar.js";
import { push } from "./push.js";
import { releaseList, releaseShow } from "./release.js";
import { releasePublish } from "./release-publish.js";
import { ssmDocumentCommand } from "./ssm.js";
import { systemFault } from "./system-faults.js";
import { terraformVarsCommand } from "./terraform.js";
import { verify } from "./verify.js";

export const COMMANDS: readonly Command[] = [
  keyGenerate,
  keyPublic,
  push,
  verify,
  releasePublish,
  releaseList,
  releaseShow,
  fetch,
  cacheServe,
  narDump,
  narRestore,
  narLs,
  buildCommand,
  planCommand,
  deployCommand,
  statusCommand,
  rollbackCommand,
  ssmDocumentCommand,
  terraformVarsCommand,
  fleetFromTerraformCommand,
  labUpCommand,
  labDownCommand,
  labListCommand,
  labExecCommand,
  labSshConfigCommand,
  agentCommand,
  agentPauseCommand,
  agentResumeCommand,
  agentStatusCommand,
];

const VERSION = "0.1.0";

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.path.join(" ").length));
  const lines = COMMANDS.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`);
  return `nixship ${VERSION}: build NixOS systems once, push them signed into a Nix binary cache,
and roll them out to a fleet.

Usage: nixship COMMAND [ARGS...]     ('nixship COMMAND --help' for details)

Commands:
${lines.join("\n")}

Exit codes: 0 success, 1 the operation failed, 2 bad usage or input, 130 interrupted
(deploy: SIGINT or SIGTERM).
`;
}

function findCommand(
  argv: readonly string[],
): { command: Command; rest: readonly string[] } | undefined {
  return COMMANDS.map((command) => ({ command, rest: argv.slice(command.path.length) }))
    .filter(({ command }) => command.path.every((word, i) => argv[i] === word))
    .sort((a, b) => b.command.path.length - a.command.path.length)[0];
}

export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    io.stdout.write(usage());
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === "--version") {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const found = findCommand(argv);
  if (!found) {
    const group = COMMANDS.filter((c) => c.path[0] === argv[0]);
    const hint = group.length
      ? `'${argv[0]}' takes one of: ${group.map((c) => c.path.slice(1).join(" ")).join(", ")}`
      : "run 'nixship --help' for the list of commands";
    io.stderr.write(`error: unknown command '${argv.slice(0, 2).join(" ")}'\nhint: ${hint}\n`);
    return 2;
  }
  if (found.rest.includes("--help") || found.rest.includes("-h")) {
    io.stdout.write(`${found.command.help}\n`);
    return 0;
  }
  try {
    return await found.command.run(found.rest, io);
  } catch (err) {
    return reportError(err, io, found.rest.includes("--json"));
  }
}

function reportError(thrown: unknown, io: CliIO, json: boolean): number {
  const err = systemFault(thrown) ?? thrown;
  const known = err instanceof NixshipError;
  const code = known ? err.code : "internal";
  const message = err instanceof Error ? err.message : String(err);
  const hint = known
    ? err.hint
    : "this is a bug in nixship; please report it with the command you ran";
  if (json)
    io.stdout.write(`${JSON.stringify({ error: { code, message, ...(hint ? { hint } : {}) } })}\n`);
  io.stderr.write(`error: ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  if (!known && err instanceof Error && process.env.NIXSHIP_DEBUG)
    io.stderr.write(`${err.stack}\n`);
  return known ? err.exitCode : 1;
}
