// `nixship agent` (the pull agent on a host), `agent pause`, `agent resume`, `agent status`.

import { realpathSync } from "node:fs";
import { hostname } from "node:os";
import { ScriptActivator } from "../agent/activator.js";
import { Agent, type AgentEvent } from "../agent/agent.js";
import {
  type AgentConfig,
  DEFAULT_AGENT_CONFIG,
  parseAgentConfig,
  parseLoopbackListen,
} from "../agent/config.js";
import { watchedConfig } from "../agent/config-watch.js";
import { checkHostNamedOnce } from "../agent/host-check.js";
import { pollForExit, rebootBackText, refusalText } from "../agent/standing.js";
import { isPaused, loadState, setPaused } from "../agent/state.js";
import { closeCacheServer, listenCacheServer, logServerFailures } from "../cache/serve.js";
import { InputError, UsageError } from "../errors.js";
import { NAME_PATTERN } from "../fleet/fleet.js";
import { parsePublicKey } from "../nix/keys.js";
import { storePathOf } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import { formatAgentEvent } from "../ui/agent-events.js";
import { readFileBounded } from "../util/bounded-file.js";
import { errnoWords } from "../util/errno-words.js";
import { makeDirs } from "../util/make-dirs.js";
import { withoutControls } from "../util/text.js";
import {
  type CliIO,
  type Command,
  parseFlags,
  refuseArguments,
  writeJson,
  writeJsonLine,
} from "./command.js";
import { serviceStop, trapInterrupts } from "./interrupts.js";

const CONFIG_FLAG = { config: { type: "string" } } as const;
const CONFIG_HELP = `  --config FILE   the agent's config file (default ${DEFAULT_AGENT_CONFIG}; see docs/agent.md)`;

export const agentCommand: Command = {
  path: ["agent"],
  summary: "the pull agent: follow a channel's signed releases and activate this host",
  help: `Usage: nixship agent [--config FILE] [--once] [--host NAME] [--json]

Runs on a host. Polls channels/<channel>.json in the store (a conditional GET every
pollInterval ± jitter), verifies the release's signature against the trusted release keys,
and when the release has an entry for this host, runs the activation contract (activate.sh:
realise from the cache with signatures required, set the profile, switch, health checks,
roll back on failure), then writes the host's status into the store. The host's Nix reads
the cache through a loopback proxy the agent serves (the cache's keys are still required).

A release that failed here is not retried until a newer one appears. Releases not signed by
a trusted key, that do not parse, or that are older than one already applied are refused,
and the status says why. After a crash in the middle of an activation, the release is
applied again on restart. Store errors back off exponentially (up to 10 minutes).

Options:
${CONFIG_HELP}
  --once          poll once, apply what the channel says, and exit (for user-data bootstrap):
                  exit 0 when the host runs the entry of the channel's current release (or
                  the release names none for it, or the channel has none); 1 when that
                  release failed or was refused here, in this poll or an earlier one (run
                  again with nothing new to apply, it still exits 1), or when the host is not
                  done: paused, busy with another activation, or rebooting into the release
                  (run again after the boot). Its events or a line on stderr say which
  --host NAME     this host's name in releases (default: the config's "host", else the
                  machine's hostname)
  --json          events as NDJSON on stdout instead of lines on stderr

Refuses to start (exit 2) when the channel has releases and neither its current release nor
the 50 before it names this host: the name it looked for is wrong (set "host" or --host).
Once one did, its state directory's host-named file says so, and later starts read no
releases for it.

Stops on SIGINT, SIGTERM or SIGHUP, after the activation in progress (if any) finishes, with
exit 0 (--once alike: its poll ends first, and it exits as the poll says); a second signal
exits 130 at once.

Subcommands (each with its own --help):
  nixship agent pause     stop applying releases (the agent keeps running and says so)
  nixship agent resume    apply releases again
  nixship agent status    this host's agent state: last release, result, refusal, paused`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...CONFIG_FLAG,
        once: { type: "boolean" },
        host: { type: "string" },
        json: { type: "boolean" },
      },
      "agent",
    );
    if (positionals.length > 0) {
      throw new UsageError(
        `agent: unexpected argument '${positionals[0]}'`,
        "the subcommands are pause, resume and status",
      );
    }
    const emit = eventWriter(io, values.json === true);
    // Its keys are taken again as the file changes (a NixOS switch rewrites it, and leaves the
    // agent running): a key dropped is no longer trusted from the next poll on.
    const { config, trustNow } = await watchedConfig(
      values.config ?? DEFAULT_AGENT_CONFIG,
      readConfig,
      (message) => emit({ type: "warning", message }),
    );
    const host = values.host ?? config.host ?? hostname().split(".")[0] ?? "";
    if (!NAME_PATTERN.test(host)) {
      throw new InputError(
        "bad-host-name",
        `agent: this host's name "${host}" is not a fleet host name (${NAME_PATTERN.source})`,
        { hint: 'set "host" in the config or pass --host' },
      );
    }
    const releaseKeys = config.releaseKeys.map((k) => parsePublicKey(k));
    await makeDirs(config.stateDir, 0o700);
    const store = await openStore(config.store);
    try {
      await checkHostNamedOnce(store, config.channel, host, releaseKeys, config.stateDir);
    } catch (err) {
      if (err instanceof InputError) {
        await store.close();
        throw err;
      }
      // The store is not reachable now: the agent's polls back off until it is.
      io.stderr.write(
        `nixship-agent: cannot check that the channel names "${host}": ${err instanceof Error ? err.message : String(err)}\n`,
      );
    }
    const listen = parseLoopbackListen(config.proxyListen) ?? { host: "127.0.0.1", port: 0 };
    // What the proxy did not tell Nix (the store's error, a NAR cut at its signed size) goes to
    // the agent's log.
    const proxy = await listenCacheServer(
      {
        store,
        onRequest: logServerFailures(
          (line) => io.stderr.write(line),
          "nixship-agent: cache proxy: ",
        ),
      },
      listen.host,
      listen.port,
    );
    const agent = new Agent({
      store,
      channel: config.channel,
      host,
      releaseKeys,
      package: runningPackage(),
      substituters: [proxy.url],
      cacheKeys: config.cacheKeys,
      trustNow,
      stateDir: config.stateDir,
      activator: new ScriptActivator(),
      activationTimeout: config.activationTimeout,
      pollInterval: config.pollInterval,
      jitter: config.jitter,
      heartbeatEvery: config.heartbeatEvery,
      // The key activate.sh decrypts the host's secrets with is this file's private half.
      hostKeyFile: "/etc/ssh/ssh_host_ed25519_key.pub",
      // Its private half signs the agent's reports (status/report-signature.ts).
      signingKeyFile: "/etc/ssh/ssh_host_ed25519_key",
      emit,
    });
    try {
      await agent.start();
      if (values.once) {
        // As the loop: an interrupt lets the activation in progress finish (and report), then
        // the poll ends; a second one exits at once.
        const trap = trapInterrupts({
          first: (signal) =>
            io.stderr.write(
              `nixship-agent: interrupted (${signal}): finishing the activation in progress, if any, first\n`,
            ),
          second: () => {},
        });
        try {
          const exit = await pollForExit(agent, trap.signal);
          if (exit.why !== undefined) {
            io.stderr.write(`nixship-agent: ${withoutControls(exit.why)}\n`);
          }
          return exit.code;
        } finally {
          trap.release();
        }
      }
      const stop = serviceStop();
      try {
        await agent.run(stop.signal);
      } finally {
        stop.release();
      }
      return 0;
    } finally {
      await closeCacheServer(proxy.server);
      await store.close();
    }
  },
};

export const agentPauseCommand: Command = {
  path: ["agent", "pause"],
  summary: "stop the agent on this host from applying new releases (it keeps running)",
  help: `Usage: nixship agent pause [--config FILE] [--json]

Makes the running agent skip its polls until 'nixship agent resume'. An activation already
in progress finishes. Takes effect at the agent's next poll; survives restarts.

Options:
${CONFIG_HELP}
  --json          one JSON object: {"paused": true, "changed": …, "flag": FILE}`,
  run: (argv, io) => setAgentPaused(argv, io, true),
};

export const agentResumeCommand: Command = {
  path: ["agent", "resume"],
  summary: "let a paused agent apply releases again",
  help: `Usage: nixship agent resume [--config FILE] [--json]

Options:
${CONFIG_HELP}
  --json          one JSON object: {"paused": false, "changed": …, "flag": FILE}`,
  run: (argv, io) => setAgentPaused(argv, io, false),
};

/** `agent pause` and `agent resume`: the pause flag set or removed, and whether that changed it. */
async function setAgentPaused(
  argv: readonly string[],
  io: CliIO,
  paused: boolean,
): Promise<number> {
  const command = paused ? "agent pause" : "agent resume";
  const { values, positionals } = parseFlags(
    argv,
    { ...CONFIG_FLAG, json: { type: "boolean" } },
    command,
  );
  refuseArguments(positionals, command);
  const config = await readConfig(values.config);
  if (paused) await makeDirs(config.stateDir, 0o700);
  const was = await isPaused(config.stateDir);
  await setPaused(config.stateDir, paused);
  const flag = `${config.stateDir}/paused`;
  if (values.json) {
    writeJson(io, { paused, changed: was !== paused, flag });
    return 0;
  }
  io.stderr.write(
    paused
      ? `${was ? "already paused" : "paused"} (${flag}); 'nixship agent resume' to undo\n`
      : `${was ? "resumed" : "not paused: nothing to resume"}\n`,
  );
  return 0;
}

export const agentStatusCommand: Command = {
  path: ["agent", "status"],
  summary: "what the agent on this host last did (its state file)",
  help: `Usage: nixship agent status [--config FILE] [--json]

Prints the agent's state: the newest release it acted on and how it ended, the channel's
document it refused since (and why), an activation in progress, and whether it is paused.
The fleet-wide view is 'nixship status'.

Options:
${CONFIG_HELP}
  --json          one JSON object`,
  async run(argv, io) {
    const { values } = parseFlags(
      argv,
      { ...CONFIG_FLAG, json: { type: "boolean" } },
      "agent status",
    );
    const config = await readConfig(values.config);
    const state = await loadState(config.stateDir);
    const paused = await isPaused(config.stateDir);
    if (values.json) {
      writeJson(io, { channel: config.channel, paused, ...state });
      return 0;
    }
    const last =
      state.lastSeq === null ? "none yet" : `release ${state.lastSeq}: ${state.lastResult}`;
    io.stdout.write(
      [
        `channel   ${config.channel}`,
        `paused    ${paused ? "yes" : "no"}`,
        `last      ${last}`,
        // Newer than the last result: the channel's current document, which the host refused.
        ...(state.refused ? [`refused   ${withoutControls(refusalText(state.refused))}`] : []),
        `applying  ${state.applying ? `release ${state.applying.seq} (${state.applying.path}) since ${state.applying.startedAt}` : "no"}`,
        // A boot undone: nothing is applied until the host reboots into its previous system.
        ...(state.rebootingBack ? [rebootBackText(state.rebootingBack, Date.now())] : []),
        "",
      ].join("\n"),
    );
    return 0;
  },
};

/** The largest agent config read (a config is a few hundred bytes). */
const AGENT_CONFIG_LIMIT = 1024 * 1024;

async function readConfig(file: string | undefined): Promise<AgentConfig> {
  const path = file ?? DEFAULT_AGENT_CONFIG;
  const unreadable = (why: string) =>
    new InputError("agent-config-unreadable", `cannot read the agent's config ${path}: ${why}`, {
      hint: "write the config (docs/agent.md) or pass --config FILE",
    });
  const bytes = await readFileBounded(path, AGENT_CONFIG_LIMIT, (size) =>
    unreadable(`${size} bytes, more than the ${AGENT_CONFIG_LIMIT} a config holds`),
  ).catch((err: NodeJS.ErrnoException) => {
    if (err instanceof InputError) throw err;
    throw unreadable(err.code === "ENOTFILE" ? "not a regular file" : errnoWords(err));
  });
  if (bytes === undefined)
    throw unreadable(errnoWords(Object.assign(new Error(), { code: "ENOENT" })));
  return parseAgentConfig(bytes.toString("utf8"), path);
}

function eventWriter(io: CliIO, json: boolean): (event: AgentEvent) => void {
  if (json) return (event) => writeJsonLine(io, { at: new Date().toISOString(), ...event });
  return (event) => {
    const line = formatAgentEvent(event);
    // An event may quote what a store's writer chose (a refused release's key name).
    if (line !== undefined) io.stderr.write(`nixship-agent: ${withoutControls(line)}\n`);
  };
}

/** The store path of the nixship package this process runs from, if it runs from the store. */
function runningPackage(): string | undefined {
  const script = process.argv[1];
  if (script === undefined) return undefined;
  try {
    return storePathOf(realpathSync(script));
  } catch {
    return undefined;
  }
}
