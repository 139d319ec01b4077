// `nixship lab up|down|list|exec|ssh-config`: real hosts on this machine, for tests, benchmarks,
// the demo, and trying a rollout before it touches a cloud.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { UsageError } from "../errors.js";
import { CURRENT_NIX_DIR, resolveHostNix } from "../lab/host-nix.js";
import { parseHostShell } from "../lab/host-shell.js";
import {
  findLabHost,
  LAB_AGENT_ACTIONS,
  type LabAgentAction,
  labAgents,
  labList,
  labsDir,
  labUp,
} from "../lab/lab.js";
import {
  AGENT_LOG,
  HOST_VIEW,
  LAB_CHANNEL,
  LAB_HEARTBEAT_EVERY,
  LAB_POLL_INTERVAL,
} from "../lab/lab-agents.js";
import { labDown, labDownAll } from "../lab/lab-down.js";
import { systemSpec } from "../lab/lab-fleet.js";
import { pinnedCacheAddress } from "../lab/lab-pinned.js";
import { listLabStates, readLabState, unreadable } from "../lab/lab-state.js";
import { labGateway, validateHostCount, validateLabName } from "../lab/layout.js";
import {
  formatLabAgents,
  formatLabEvent,
  formatLabHints,
  formatLabHosts,
} from "../ui/lab-lines.js";
import { type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { whileTrapped } from "./interrupts.js";

const WHERE = `Labs live in $NIXSHIP_LAB_DIR (default /var/lib/nixship/labs), one directory per lab.`;

/**
 * A lab `command` was asked for that is not there: without --name, the message says the
 * default name was looked for; the hint names the labs there are (--name NAME picks one).
 */
async function noLab(
  command: string,
  name: string,
  named: boolean,
  dir: string,
  what = "",
): Promise<UsageError> {
  const labs = (await listLabStates(dir).catch(() => [])).map((s) => s.name);
  const hint =
    labs.length > 0
      ? `name a lab with --name NAME; the labs in ${dir}: ${labs.join(", ")}`
      : `start one with 'nixship lab up N${named ? ` --name ${name}` : ""}' (--name NAME names it; none is in ${dir})`;
  return new UsageError(
    `${command}: no lab '${name}'${named ? "" : " (the default name; --name NAME names another)"}${what}`,
    hint,
  );
}

export const labUpCommand: Command = {
  path: ["lab", "up"],
  summary: "start N local hosts (netns + own /nix + real sshd); needs root",
  help: `Usage: nixship lab up N [--name PREFIX] [--system SYSTEM] [--fleet FILE] [--agents]
                     [--nix system|current|DIR] [--sh system|bash] [--boot-counting T]
                     [--pinned] [--json]

Starts N hosts on this machine, called PREFIX1..PREFIXN (default prefix: lab). Each host is a
network namespace with its own address on a bridge the lab creates (10.231.L.2 and up; the
deployer is 10.231.L.1), a mount namespace with its own empty /nix, /etc/nix, /run and /tmp,
and a real OpenSSH sshd on port 22 of its address. Hosts have no route beyond the lab.

The lab writes, in its directory:
  ssh_config     Host entries for every host: key login, strict host key checking, one
                 shared connection per host (ControlMaster)
  known_hosts    every host's key, under its name and its address
  id_ed25519     the client key the hosts accept
  nixship.json   a fleet file for the hosts (tags: the lab's name, and web for odd hosts,
                 db for even ones), using the files above, a directory cache in the lab
                 and an HTTP health check of the example service
  cache.sec      the key that signs that cache; deploy with
                   nixship deploy --fleet DIR/nixship.json --key DIR/cache.sec \\
                     --serve-cache "$(nixship lab address --name PREFIX):0"
                 (10.231.L.1, L the lab's number: it depends on the labs already up)
  fleet/flake.nix  the same fleet in Nix: a flake whose \`nixship\` output names each host's
                 system as an attribute of nixship's example systems (locked beside it);
                 deploy it with --fleet path:DIR/fleet#nixship
Use them with: ssh -F "$(nixship lab ssh-config --path)" lab1

With --agents, each host also runs a pull agent (nixship agent) following the channel
"${LAB_CHANNEL}" of the lab's cache, and the fleet file makes the hosts agent hosts:
  release.sec        the key that signs the lab's releases; deploy with
                       nixship deploy --fleet DIR/nixship.json --key DIR/cache.sec \\
                         --release-key DIR/release.sec
  hosts/H/agent/     host H's agent: config.json (its own host name and state directory;
                     a poll every ${LAB_POLL_INTERVAL} s, a heartbeat every ${LAB_HEARTBEAT_EVERY} polls), state/, ${AGENT_LOG}
The hosts see the cache and their agent directory under ${HOST_VIEW}, beside the nixship
that started the lab and its Node.js, which every lab host sees there (nixship/, node).
'lab agents stop|start' stops and starts them.

With --pinned, each host is installed (as an installer would: the closure in its store, its
system profile set, then its first boot) with a system that has nixship-activate pinning the
lab's cache key and one substituter, http://10.231.L.1:(20000+L), as nixosModules.host does
(docs/pinned-hosts.md); the fleet file reaches the hosts as the user deploy through sudo and
names web-v2 of the lab's flake of pinned systems (DIR/pinned). Deploy with
  nixship deploy --fleet DIR/nixship.json --key DIR/cache.sec \\
    --serve-cache 10.231.L.1:(20000+L)
(lab up prints the line with the numbers filled in).

Running it again with the same N is a no-op. ${WHERE}

Options:
  --name PREFIX   host name prefix and lab name (a-z, 0-9, '-'; default lab)
  --system S      what the fleet file says the hosts run: a flake output or a store path
                  (default: the example system web-v1 that comes with nixship)
  --fleet FILE    also add the hosts to this fleet file (created if missing; other hosts
                  and settings are kept)
  --agents        run a pull agent on each host (not with --fleet)
  --nix N         the Nix the hosts run: system (this machine's, the default), current
                  (the one 'bash scripts/current-nix.sh' makes from Debian trixie, in
                  $NIXSHIP_CURRENT_NIX_DIR or ${CURRENT_NIX_DIR}), or a directory
                  holding a nix executable; each host's /nix is its own either way
  --sh S          what the hosts' sh is: system (this machine's /bin/sh, the default; dash
                  on Debian) or bash, as NixOS's is (bound over the machine's sh in each
                  host's mount namespace alone): a script piped to 'sh -s' is then read and
                  costs as on NixOS
  --boot-counting T  the hosts' boot loaders count boots (systemd-boot's boot counting): a
                  new entry is tried T times (1-9) before the loader falls back to the
                  previous one (see 'nixship lab reboot --help'); default: no counting
  --pinned        install the hosts with pinned systems, deployed to as deploy through sudo
                  (not with --agents, --fleet, --system or another --nix)
  --json          one JSON object on stdout: the lab's state (name, number, hosts with their
                  name, address, netns and pid), alreadyUp, deployerAddress, dir and files
                  (the paths written above), and no progress on stderr`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        name: { type: "string" },
        system: { type: "string" },
        fleet: { type: "string" },
        agents: { type: "boolean" },
        nix: { type: "string" },
        sh: { type: "string" },
        "boot-counting": { type: "string" },
        pinned: { type: "boolean" },
        json: { type: "boolean" },
      },
      "lab up",
    );
    if (values.pinned) {
      const other = (["agents", "fleet", "system"] as const).find((k) => values[k] !== undefined);
      if (other !== undefined || (values.nix !== undefined && values.nix !== "system")) {
        throw new UsageError(
          `lab up: --pinned installs the lab's own pinned systems with the machine's Nix; leave out --${other ?? "nix"}`,
        );
      }
    }
    const tries = values["boot-counting"];
    if (tries !== undefined && !/^[1-9]$/.test(tries)) {
      throw new UsageError(
        `lab up: --boot-counting takes the tries per entry, 1-9; got '${tries}'`,
      );
    }
    if (values.fleet !== undefined && values.fleet.trim() === "") {
      throw new UsageError("lab up: --fleet is empty", "name the fleet file to add the lab to");
    }
    if (values.agents && values.fleet !== undefined) {
      throw new UsageError(
        "lab up: --agents uses the lab's own fleet file (its release key and channel); leave out --fleet",
      );
    }
    if (positionals.length !== 1) throw new UsageError("lab up: give the number of hosts, N");
    const count = Number(positionals[0]);
    if (!/^\d+$/.test(positionals[0] ?? "")) {
      throw new UsageError(
        `lab up: N is the number of hosts, a whole number; got '${positionals[0]}'`,
      );
    }
    validateHostCount(count);
    const name = validateLabName(values.name ?? "lab");
    const shell = parseHostShell(values.sh ?? "system");
    const nix = await resolveHostNix(values.nix ?? "system", io.env);
    // An interrupt stops the start between its steps and takes down what it made (exit 130).
    const { state, layout, alreadyUp, mergedInto } = await whileTrapped("lab up", (signal) =>
      labUp({
        signal,
        labsDir: labsDir(io.env),
        name,
        count,
        ...(values.system !== undefined ? { system: systemSpec(values.system) } : {}),
        ...(values.fleet !== undefined ? { mergeInto: resolve(values.fleet) } : {}),
        agents: values.agents === true,
        ...(nix ? { nix } : {}),
        ...(shell === "bash" ? { shell } : {}),
        ...(tries === undefined ? {} : { bootCounting: Number(tries) }),
        ...(values.pinned ? { pinned: true } : {}),
        onEvent: (e) => {
          const line = values.json ? undefined : formatLabEvent(e);
          if (line !== undefined) io.stderr.write(`${line}\n`);
        },
      }),
    );
    if (values.json) {
      writeJson(io, {
        ...state,
        alreadyUp,
        deployerAddress: layout.gateway,
        dir: layout.dir,
        files: layout.files,
      });
      return 0;
    }
    io.stdout.write(formatLabHosts(state));
    io.stderr.write(formatLabHints(state, layout, alreadyUp, mergedInto));
    return 0;
  },
};

export const labAgentsCommand: Command = {
  path: ["lab", "agents"],
  summary: "stop, start, pause or resume the pull agents of a lab started with --agents",
  help: `Usage: nixship lab agents start|stop|pause|resume [--name PREFIX] [HOST...] [--json]

Acts on the agents of the named hosts (all of the lab's by default; without --name, the lab is
the one that holds the first HOST, else the lab called 'lab'):
  stop     stops them as their service unit does: TERM, and the agent finishes an activation
           in progress first; one still running 12 minutes later is killed with every
           process it started
  start    starts those that do not run, in their hosts, and returns once each has written
           a heartbeat (at most 30 s) to the lab's cache, or to the S3 store its config
           names (read with this machine's credentials); an agent reads its config
           (hosts/H/agent/config.json in the lab's directory) when it starts
  pause    as 'nixship agent pause' on the host: from its next poll the agent only writes
           its heartbeat, which says it is paused
  resume   as 'nixship agent resume'
It prints a line per host it acted on: 'HOST: paused' or 'HOST: resumed' (as the host's pause
flag says afterwards), else HOST and its agent's pid, or 'stopped'; with --json, every host of
the lab with its agent's pid (or null) and whether it is paused.
${WHERE}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { name: { type: "string" }, json: { type: "boolean" } },
      "lab agents",
    );
    const [action, ...hosts] = positionals;
    if (!LAB_AGENT_ACTIONS.some((a) => a === action)) {
      throw new UsageError(
        `lab agents: give ${LAB_AGENT_ACTIONS.join(", ")}${action === undefined ? "" : `, not '${action}'`}`,
        "see 'nixship lab agents --help'",
      );
    }
    // Without --name, the lab of the hosts named (as 'lab exec' finds its host), else "lab".
    const [first] = hosts;
    const lab =
      values.name !== undefined || first === undefined
        ? validateLabName(values.name ?? "lab")
        : (await findLabHost(labsDir(io.env), first)).lab;
    const done = await labAgents(labsDir(io.env), lab, action as LabAgentAction, hosts, (e) => {
      if (!values.json && e.type === "agent-up") {
        io.stderr.write(`${e.host}: its agent runs (pid ${e.pid})\n`);
      }
    });
    if (values.json) {
      writeJson(io, {
        lab: done.state.name,
        agents: done.state.hosts.map((h) => ({
          host: h.name,
          pid: h.agentPid ?? null,
          paused: done.paused.has(h.name),
        })),
      });
    } else io.stdout.write(formatLabAgents(action as LabAgentAction, done));
    return 0;
  },
};

export const labDownCommand: Command = {
  path: ["lab", "down"],
  summary: "remove a lab and every trace of it (processes, namespaces, links, files)",
  help: `Usage: nixship lab down [--name PREFIX | --all] [--json]

Stops every process of the lab's hosts, deletes their namespaces, links and the bridge, and
removes the lab's directory (the hosts' /nix included). Idempotent, and it also cleans what a
crashed run left behind. A lab is owned by its lab directory: a lab of the same name in
another directory (another NIXSHIP_LAB_DIR) is not touched. --all does this for every lab of
this lab directory, including leftovers whose state file is gone. ${WHERE}

Options:
  --name PREFIX   the lab to remove (default lab)
  --all           every lab of this lab directory
  --json          one JSON object on stdout: {"labs": [NAME...]}, the labs removed ([] when
                  there was none by that name)`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { name: { type: "string" }, all: { type: "boolean" }, json: { type: "boolean" } },
      "lab down",
    );
    if (positionals.length > 0) throw new UsageError(`lab down: unexpected '${positionals[0]}'`);
    if (values.all && values.name !== undefined)
      throw new UsageError("lab down: give --name or --all, not both");
    const dir = labsDir(io.env);
    const result = values.all
      ? await labDownAll(dir)
      : await labDown(dir, validateLabName(values.name ?? "lab"));
    if (values.json) writeJson(io, result);
    else if (result.labs.length > 0) io.stderr.write(`removed: ${result.labs.join(", ")}\n`);
    else {
      // Nothing by that name: the labs there are, by name, so that the next try is right.
      const others = [...new Set((await labList(dir)).map((h) => h.lab))];
      const there =
        others.length === 0 ? "" : `; the labs there: ${others.join(", ")} (--name NAME, or --all)`;
      io.stderr.write(
        `nothing to remove: no lab${values.all ? "" : ` '${values.name ?? "lab"}'`} in ${dir}${there} (a lab started with another $NIXSHIP_LAB_DIR is taken down with that one)\n`,
      );
    }
    return 0;
  },
};

export const labListCommand: Command = {
  path: ["lab", "list"],
  summary: "list lab hosts, their addresses and whether they run",
  help: `Usage: nixship lab list [--name PREFIX] [--json]

Every host of every lab, or with --name only that lab's: name, address, whether it runs, and
its lab. ${WHERE}

Options:
  --name PREFIX   only this lab's hosts (an error when there is no such lab)
  --json          one JSON object on stdout: {"hosts": [{"lab", "name", "address", "netns",
                  "pid", "running"}...]}: each host's lab, name, address on the lab's bridge,
                  network namespace, its sshd's pid, and whether that still runs`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { name: { type: "string" }, json: { type: "boolean" } },
      "lab list",
    );
    if (positionals.length > 0) throw new UsageError(`lab list: unexpected '${positionals[0]}'`);
    const only = values.name === undefined ? undefined : validateLabName(values.name);
    const dir = labsDir(io.env);
    const hosts = (await labList(dir)).filter((h) => only === undefined || h.lab === only);
    if (only !== undefined && (await readLabState(join(dir, only))) === undefined) {
      throw await noLab("lab list", only, true, dir);
    }
    if (values.json) {
      writeJson(io, { hosts });
      return 0;
    }
    for (const h of hosts) {
      io.stdout.write(`${h.name}\t${h.address}\t${h.running ? "running" : "down"}\tlab ${h.lab}\n`);
    }
    if (hosts.length === 0)
      io.stderr.write(`no lab in ${dir}: start one with 'nixship lab up N'\n`);
    return 0;
  },
};

export const labExecCommand: Command = {
  path: ["lab", "exec"],
  summary: "run a command on a lab host (in its namespaces), without SSH",
  help: `Usage: nixship lab exec [--name PREFIX] HOST -- COMMAND [ARGS...]

Runs COMMAND inside HOST's network and mount namespaces (its /nix, /run, /tmp and address),
with a clean environment, and exits with its exit code. With --name, HOST is looked for in
that lab only.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { name: { type: "string" } }, "lab exec");
    const [name, ...command] = positionals;
    if (name === undefined || command.length === 0)
      throw new UsageError("lab exec: give a HOST and, after --, a COMMAND");
    const lab = values.name === undefined ? undefined : validateLabName(values.name);
    const host = await findLabHost(labsDir(io.env), name, lab);
    return await new Promise<number>((resolve, reject) => {
      const child = spawn("nsenter", ["-t", String(host.pid), "-m", "-n", "--", ...command], {
        cwd: "/",
        env: {
          PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          HOME: "/root",
          LANG: "C.UTF-8",
        },
        stdio: ["pipe", "pipe", "pipe"],
      });
      io.stdin.pipe(child.stdin).on("error", () => {});
      child.stdout.pipe(io.stdout, { end: false });
      child.stderr.pipe(io.stderr, { end: false });
      child.on("error", reject);
      child.on("close", (code, signal) => resolve(code ?? (signal ? 128 + 9 : 1)));
    });
  },
};

export const labSshConfigCommand: Command = {
  path: ["lab", "ssh-config"],
  summary: "print the ssh_config for a lab's hosts (or its path)",
  help: `Usage: nixship lab ssh-config [--name PREFIX] [--path]

Prints the lab's ssh_config (Host entries with the lab's key, known_hosts and strict host key
checking), or with --path only its file name.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { name: { type: "string" }, path: { type: "boolean" } },
      "lab ssh-config",
    );
    refuseArguments(positionals, "lab ssh-config");
    const name = validateLabName(values.name ?? "lab");
    const file = join(labsDir(io.env), name, "ssh_config");
    // Read even for --path: a path printed for a lab that is not there helps no one.
    const text = await readFile(file, "utf8").catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw unreadable(file, err);
      throw await noLab(
        "lab ssh-config",
        name,
        values.name !== undefined,
        labsDir(io.env),
        ` (${file} is missing)`,
      );
    });
    io.stdout.write(values.path ? `${file}\n` : text);
    return 0;
  },
};

export const labAddressCommand: Command = {
  path: ["lab", "address"],
  summary: "print this machine's address on a lab's network (to serve a cache to its hosts)",
  help: `Usage: nixship lab address [--name PREFIX] [--serve] [--json]

Prints the address this machine has on the lab's bridge, where the lab's hosts reach it:
10.231.L.1, L being the lab's number, which depends on the labs that were up when it started.
Serve the lab's cache to its hosts there:
  nixship deploy --fleet DIR/nixship.json --key DIR/cache.sec \\
    --serve-cache "$(nixship lab address --name PREFIX):0"
With --serve it prints what to give --serve-cache: ADDRESS:0 (any free port), or for a lab
started with --pinned the fixed port its hosts' pinned substituter names (20000+L):
  nixship deploy ... --serve-cache "$(nixship lab address --name PREFIX --serve)"
${WHERE}

Options:
  --name PREFIX   the lab (default lab)
  --serve         print what to give --serve-cache instead of the address
  --json          one JSON object on stdout: {"lab", "number", "address", "serve"}: the lab's
                  name and number L, this machine's address on its bridge, and what to give
                  --serve-cache`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { name: { type: "string" }, serve: { type: "boolean" }, json: { type: "boolean" } },
      "lab address",
    );
    if (positionals.length > 0) throw new UsageError(`lab address: unexpected '${positionals[0]}'`);
    const name = validateLabName(values.name ?? "lab");
    const state = await readLabState(join(labsDir(io.env), name));
    if (state === undefined) {
      throw await noLab("lab address", name, values.name !== undefined, labsDir(io.env));
    }
    const address = labGateway(state.number);
    const serve =
      state.pinned === true
        ? pinnedCacheAddress({ gateway: address, number: state.number })
        : `${address}:0`;
    if (values.json) writeJson(io, { lab: state.name, number: state.number, address, serve });
    else io.stdout.write(`${values.serve ? serve : address}\n`);
    return 0;
  },
};
