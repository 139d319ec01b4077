// The commands, by the words that select them, each loaded only when it is run or its help is
// shown: importing every command's modules cost about 0.15 s at every start, which a push of
// nothing new or a status call would pay for nothing.
import type { Command } from "./command.js";

export interface CommandEntry {
  /** Words that select the command, e.g. `["cache", "serve"]`; the same as its `path`. */
  readonly path: readonly string[];
  readonly load: () => Promise<Command>;
}

const entry = (words: string, load: () => Promise<Command>): CommandEntry => ({
  path: words.split(" "),
  load,
});

export const COMMANDS: readonly CommandEntry[] = [
  entry("init", async () => (await import("./init.js")).initCommand),
  entry("key generate", async () => (await import("./key.js")).keyGenerate),
  entry("key public", async () => (await import("./key.js")).keyPublic),
  entry("push", async () => (await import("./push.js")).push),
  entry("verify", async () => (await import("./verify.js")).verify),
  entry("release publish", async () => (await import("./release-publish.js")).releasePublish),
  entry("release refresh", async () => (await import("./release-refresh.js")).releaseRefresh),
  entry("release list", async () => (await import("./release.js")).releaseList),
  entry("release show", async () => (await import("./release.js")).releaseShow),
  entry("fetch", async () => (await import("./fetch.js")).fetch),
  entry("cache init", async () => (await import("./cache-init.js")).cacheInit),
  entry("cache serve", async () => (await import("./cache-serve.js")).cacheServe),
  entry("cache gc", async () => (await import("./cache-gc.js")).cacheGc),
  entry("cache stats", async () => (await import("./cache-stats.js")).cacheStatsCommand),
  entry("cache pin", async () => (await import("./cache-pin.js")).cachePin),
  entry("cache unpin", async () => (await import("./cache-pin.js")).cacheUnpin),
  entry("cache pins", async () => (await import("./cache-pin.js")).cachePins),
  entry("nar dump", async () => (await import("./nar.js")).narDump),
  entry("nar restore", async () => (await import("./nar.js")).narRestore),
  entry("nar ls", async () => (await import("./nar.js")).narLs),
  entry("build", async () => (await import("./build.js")).buildCommand),
  entry("plan", async () => (await import("./deploy.js")).planCommand),
  entry("deploy", async () => (await import("./deploy.js")).deployCommand),
  entry("status", async () => (await import("./status.js")).statusCommand),
  entry("dashboard", async () => (await import("./dashboard.js")).dashboardCommand),
  entry("rollback", async () => (await import("./rollback.js")).rollbackCommand),
  entry("rollout resume", async () => (await import("./rollout.js")).rolloutResumeCommand),
  entry("rollout abort", async () => (await import("./rollout.js")).rolloutAbortCommand),
  entry("ssm document", async () => (await import("./ssm.js")).ssmDocumentCommand),
  entry("terraform vars", async () => (await import("./terraform.js")).terraformVarsCommand),
  entry(
    "fleet from-terraform",
    async () => (await import("./fleet-from-terraform.js")).fleetFromTerraformCommand,
  ),
  entry("lab up", async () => (await import("./lab.js")).labUpCommand),
  entry("lab down", async () => (await import("./lab.js")).labDownCommand),
  entry("lab list", async () => (await import("./lab.js")).labListCommand),
  entry("lab exec", async () => (await import("./lab.js")).labExecCommand),
  entry("lab agents", async () => (await import("./lab.js")).labAgentsCommand),
  entry("lab reboot", async () => (await import("./lab-reboot.js")).labRebootCommand),
  entry("lab ssh-config", async () => (await import("./lab.js")).labSshConfigCommand),
  entry("lab address", async () => (await import("./lab.js")).labAddressCommand),
  entry("agent", async () => (await import("./agent.js")).agentCommand),
  entry("agent pause", async () => (await import("./agent.js")).agentPauseCommand),
  entry("agent resume", async () => (await import("./agent.js")).agentResumeCommand),
  entry("agent status", async () => (await import("./agent.js")).agentStatusCommand),
  entry("doctor", async () => (await import("./doctor.js")).doctorCommand),
  entry("secrets set", async () => (await import("./secrets.js")).secretsSet),
  entry("secrets edit", async () => (await import("./secrets.js")).secretsEdit),
  entry("secrets rekey", async () => (await import("./secrets.js")).secretsRekey),
  entry("secrets list", async () => (await import("./secrets.js")).secretsList),
];

/** The command an entry names; its own `path` must be the entry's, or the table is wrong. */
export async function loadCommand(found: CommandEntry): Promise<Command> {
  const command = await found.load();
  if (command.path.join(" ") !== found.path.join(" ")) {
    throw new Error(
      `the command table names "${found.path.join(" ")}" for the command "${command.path.join(" ")}"`,
    );
  }
  return command;
}

/** Every command, loaded (for the lists in help texts). */
export function loadCommands(entries: readonly CommandEntry[] = COMMANDS): Promise<Command[]> {
  return Promise.all(entries.map(loadCommand));
}
