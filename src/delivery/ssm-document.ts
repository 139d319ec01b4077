// The SSM Command document that runs activate.sh on ssm hosts (Run Command or a State Manager
// association), generated with activate.sh embedded (without its comments, gzip-compressed and
// base64-encoded: SSM takes documents up to 64 KiB, which the script alone outgrew; `nixship ssm
// document --script` prints what is embedded), and the shell SSM makes of it for given
// parameters: SSM pastes each value textually in place of its `{{ Name }}`.
import { gunzipSync, gzipSync } from "node:zlib";
import { InputError } from "../errors.js";
import { compactActivateScript, PINNED_ACTIVATOR } from "../host/activation.js";
import { shownUrl } from "../util/url-credentials.js";

export interface SsmDocumentParameter {
  readonly type: "String";
  readonly description: string;
  /** Anchored at both ends; never admits `'` or a newline (see `ssmDocument`). */
  readonly allowedPattern: string;
  readonly default?: string;
}

export interface SsmCommandDocument {
  readonly schemaVersion: "2.2";
  readonly description: string;
  readonly parameters: Readonly<Record<string, SsmDocumentParameter>>;
  readonly mainSteps: readonly {
    readonly action: "aws:runShellScript";
    readonly name: string;
    readonly precondition: { readonly StringEquals: readonly [string, string] };
    readonly inputs: { readonly timeoutSeconds: string; readonly runCommand: readonly string[] };
  }[];
}

const URL = String.raw`(https?|s3)://[A-Za-z0-9._~:/?#@&=%+,\[\]-]+`;
const KEY = "[A-Za-z0-9._-]+:[A-Za-z0-9+/]+={0,2}";

/** The document's parameters: every value is checked against its pattern before SSM runs it. */
export const SSM_PARAMETERS = {
  Command: {
    type: "String",
    description:
      "What activate.sh does: activate a system, roll back, prune old generations, run HealthChecks again on the running system (check, changing nothing), report status, or judge (after-boot: the system booted, then HealthChecks), keep (confirm-boot) or undo (abort-boot) a system the host booted into (RebootToken).",
    allowedPattern: "^(activate|rollback|prune|check|status|after-boot|confirm-boot|abort-boot)$",
    default: "activate",
  },
  StorePath: {
    type: "String",
    description: "The system (a NixOS toplevel store path) to activate.",
    allowedPattern: "^(/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+)?$",
    default: "",
  },
  Action: {
    type: "String",
    description: "The switch-to-configuration action.",
    allowedPattern: "^(switch|boot|test|dry-activate)$",
    default: "switch",
  },
  Substituters: {
    type: "String",
    description:
      "Space-separated binary caches (http, https or s3 URLs) the host realises StorePath from, with signatures required; empty: StorePath must already be on the host.",
    allowedPattern: `^(${URL}( ${URL})*)?$`,
    default: "",
  },
  TrustedPublicKeys: {
    type: "String",
    description: "Space-separated keys (name:base64) whose signatures the host accepts.",
    allowedPattern: `^(${KEY}( ${KEY})*)?$`,
    default: "",
  },
  HealthChecks: {
    type: "String",
    description:
      'Base64 of a JSON list of command checks, [{"run": "shell command", "timeout": seconds}], run on the host after the switch, each within its own timeout; a failing check rolls the host back.',
    allowedPattern: "^[A-Za-z0-9+/=]*$",
    default: "",
  },
  SecretsUrl: {
    type: "String",
    description:
      "How the host gets its secrets bundle (age ciphertexts only, which it decrypts with its SSH host key before the switch): 'age:' and base64 of an age file sealed to its host key that holds a short-lived (presigned) URL of the bundle, so that this parameter, which SSM keeps and shows, fetches nothing for anyone else; 'none': the empty bundle (the host removes the secrets it has); empty: the host's secrets are left as they are.",
    allowedPattern: "^(none|age:[A-Za-z0-9+/]{1,16384}={0,2})?$",
    default: "",
  },
  SecretsSha256: {
    type: "String",
    description: "The sha256 (hex) of the secrets bundle: a bundle that differs is refused.",
    allowedPattern: "^([0-9a-f]{64})?$",
    default: "",
  },
  AgePath: {
    type: "String",
    description:
      "A store path whose bin/age decrypts the secrets, realised like StorePath; empty: age from the host's PATH.",
    allowedPattern: "^(/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+)?$",
    default: "",
  },
  DeltaTool: {
    type: "String",
    description:
      "A store path whose bin/zstd rebuilds paths from the cache's deltas before StorePath is realised (realised like it); empty: every path whole.",
    allowedPattern: "^(/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+)?$",
    default: "",
  },
  ExpectCurrent: {
    type: "String",
    description:
      "A store path: the instance must run it (checked under its activation lock before anything changes) or it is left as it is, changed since (activate.sh exit 14); empty: whatever it runs.",
    allowedPattern: "^(/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+)?$",
    default: "",
  },
  Generation: {
    type: "String",
    description: "For Command rollback: the generation to go back to (empty: the previous one).",
    allowedPattern: "^([0-9]{1,9})?$",
    default: "",
  },
  KeepGenerations: {
    type: "String",
    description:
      "For Command prune: the newest system generations to keep (the one a rollback goes to is kept too); the rest are removed and garbage collected.",
    allowedPattern: "^([1-9][0-9]{0,5})?$",
    default: "",
  },
  RebootToken: {
    type: "String",
    description:
      "With Command activate: reboot into StorePath (switch-to-configuration boot, then the script exits 194, which has SSM's agent reboot the instance and run it again); the run after the boot checks that the instance booted StorePath, then runs HealthChecks. With after-boot, confirm-boot and abort-boot: the pending boot to judge, keep or undo. Empty: no reboot.",
    allowedPattern: "^([A-Za-z0-9_-]{1,64})?$",
    default: "",
  },
  BootToken: {
    type: "String",
    description:
      "With Command activate, Action boot and no RebootToken: the host records StorePath as a boot pending under this token, which the next deploy judges once the host booted it (after-boot, confirm-boot or abort-boot with RebootToken set to it). Empty: nothing recorded.",
    allowedPattern: "^([A-Za-z0-9_-]{1,64})?$",
    default: "",
  },
  RebootRollback: {
    type: "String",
    description:
      "true: an instance that fails after its reboot (another system booted, a check failed, abort-boot) is rebooted into its previous system too; false: it boots it at its next reboot.",
    allowedPattern: "^(true|false)$",
    default: "true",
  },
  ActivationTimeout: {
    type: "String",
    description:
      "Seconds activate.sh gives the activation (realise, profile, switch-to-configuration) or a rollback; past it, what runs is stopped and the host goes back to its previous system.",
    allowedPattern: "^[1-9][0-9]{0,5}$",
    default: "600",
  },
  ExecutionTimeout: {
    type: "String",
    description: "Seconds the script may run before SSM stops it.",
    allowedPattern: "^([1-9][0-9]{0,4}|1[0-6][0-9]{4}|17[01][0-9]{3}|172[0-7][0-9]{2}|172800)$",
    default: "3600",
  },
} as const satisfies Record<string, SsmDocumentParameter>;

export type SsmParameterName = keyof typeof SSM_PARAMETERS;
export type SsmParameterValues = Partial<Record<SsmParameterName, string>>;

const HEREDOC_END = "NIXSHIP_ACTIVATE_SH";

/**
 * The health checks turned into activate.sh arguments on the host: one line with the longest
 * timeout, then a line for each check with its own timeout and command. Nix parses the JSON
 * because it is the one tool every host has (`nix eval` needs no store paths).
 */
const CHECKS_EXPR = [
  'let checks = builtins.fromJSON (builtins.getEnv "NIXSHIP_HEALTH_CHECKS");',
  "  valid = c: builtins.isAttrs c && builtins.isString (c.run or null)",
  "    && builtins.isInt (c.timeout or 10) && (c.timeout or 10) > 0",
  "    && builtins.isBool (c.retry or true);",
  "  longest = builtins.head (builtins.sort (a: b: a > b) (map (c: c.timeout or 10) checks ++ [ 1 ]));",
  // Each check's line: "r" (retried) or "o" (run once: retry false), its timeout, ":", its run.
  '  line = c: (if c.retry or true then "r" else "o") + toString (c.timeout or 10) + ":" + c.run;',
  "in if builtins.isList checks && builtins.all valid checks",
  '  then builtins.concatStringsSep "\\n" ([ (toString longest) ] ++ map line checks)',
  '  else throw "not a list of checks"',
].join("\n");

// Every `{{ }}` sits alone in single quotes, and no pattern admits `'`: a value can never end
// the quoted string, whatever it holds. Values are then only ever expanded in double quotes,
// or split on spaces with globbing off (set -f).
const PRELUDE = String.raw`# nixship: runs activate.sh (embedded below) with this command's parameters.
set -u
set -f
PATH="$PATH:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin"
command='{{ Command }}'
store_path='{{ StorePath }}'
action='{{ Action }}'
substituters='{{ Substituters }}'
trusted_keys='{{ TrustedPublicKeys }}'
health_checks='{{ HealthChecks }}'
secrets_url='{{ SecretsUrl }}'
secrets_sha256='{{ SecretsSha256 }}'
age_path='{{ AgePath }}'
delta_tool='{{ DeltaTool }}'
expect_current='{{ ExpectCurrent }}'
generation='{{ Generation }}'
keep_generations='{{ KeepGenerations }}'
activation_timeout='{{ ActivationTimeout }}'
reboot_token='{{ RebootToken }}'
boot_token='{{ BootToken }}'
reboot_rollback='{{ RebootRollback }}'
# A run with a RebootToken whose reboot is pending on this instance is the one SSM's agent makes
# after the reboot that exit 194 asked for: it judges the boot.
after_boot=0 reboot_now=0 with_checks=0
if [ -n "$reboot_token" ] && grep -qx "token=$reboot_token" /nix/var/nixship/boot-pending 2>/dev/null; then
  after_boot=1
fi
usage() {
  printf '{"ok":false,"command":null,"result":"usage","exitCode":2,"message":"%s"}\n' "$1"
  exit 2
}
case $command in
  activate | after-boot)
    if [ "$after_boot" = 1 ] || [ "$command" = after-boot ]; then
      [ -n "$reboot_token" ] || usage "after-boot needs a RebootToken"
      set -- after-boot --token "$reboot_token"
      [ "$reboot_rollback" = false ] || set -- "$@" --reboot-rollback
    else
      set -- activate --path "$store_path" --action "$action" --activation-timeout "$activation_timeout"
      for s in $substituters; do set -- "$@" --substituter "$s"; done
      for k in $trusted_keys; do set -- "$@" --trusted-key "$k"; done
      if [ -n "$secrets_url" ]; then
        set -- "$@" --secrets --secrets-url - --secrets-sha256 "$secrets_sha256"
        [ -z "$age_path" ] || set -- "$@" --age "$age_path"
      fi
      [ -z "$delta_tool" ] || set -- "$@" --delta-tool "$delta_tool"
      [ -z "$expect_current" ] || set -- "$@" --expect-current "$expect_current"
      if [ -n "$reboot_token" ]; then
        [ "$action" = boot ] || usage "a RebootToken needs Action boot"
        set -- "$@" --reboot-token "$reboot_token" --caller-reboots
        reboot_now=1
      elif [ -n "$boot_token" ]; then
        [ "$action" = boot ] || usage "a BootToken needs Action boot"
        set -- "$@" --boot-token "$boot_token"
      fi
    fi
    # The checks run after the switch, or after the reboot (not with the boot activation).
    [ "$reboot_now" = 1 ] || with_checks=1
    ;;
  check)
    set -- check
    with_checks=1
    ;;
  rollback)
    set -- rollback --activation-timeout "$activation_timeout"
    [ -z "$generation" ] || set -- "$@" --to "$generation"
    ;;
  prune) set -- prune --keep "$keep_generations" ;;
  status) set -- status ;;
  confirm-boot | abort-boot)
    [ -n "$reboot_token" ] || usage "$command needs a RebootToken"
    set -- "$command" --token "$reboot_token"
    [ "$command" = confirm-boot ] || [ "$reboot_rollback" = false ] || set -- "$@" --reboot-rollback
    ;;
  *) usage "Command must be activate, rollback, prune, check, status, after-boot, confirm-boot or abort-boot" ;;
esac
# The command checks: after the switch or the reboot (activate, after-boot), or again (check).
if [ -n "$health_checks" ] && [ "$with_checks" = 1 ]; then
  checks=$(printf '%s' "$health_checks" | base64 -d) || usage "HealthChecks is not base64"
  lines=$(NIXSHIP_HEALTH_CHECKS=$checks nix eval --extra-experimental-features nix-command \
    --impure --raw --expr '${CHECKS_EXPR}') ||
    usage "HealthChecks must be base64 of a JSON list of checks with run (a command) and timeout (seconds)"
  first=1
  old_ifs=$IFS
  IFS='
'
  # Each check within its own timeout, then the longest again (activate.sh's health_option).
  for line in $lines; do
    if [ "$first" = 1 ]; then
      longest=$line
      first=0
    else
      check_timeout=${"$"}{line#?}
      set -- "$@" --health-timeout "${"$"}{check_timeout%%:*}"
      case $line in
        o*) set -- "$@" --health-once "${"$"}{line#*:}" ;;
        *) set -- "$@" --health-cmd "${"$"}{line#*:}" ;;
      esac
    fi
  done
  [ "$first" = 1 ] || set -- "$@" --health-timeout "$longest"
  IFS=$old_ifs
fi
# Runs the activation: the secrets' URL (presigned: it carries the sender's access key and
# session token) on its input, never in a process's arguments.
run_activation() {
  if [ -n "$secrets_url" ]; then
    printf '%s\n' "$secrets_url" | "$@"
  else
    "$@" </dev/null
  fi
}
# A host with pinned trust (nixship's nixosModules.host) runs its own installed copy, which takes
# the host's substituters and keys and ignores those given here.
if [ -x ${PINNED_ACTIVATOR} ]; then
  run_activation ${PINNED_ACTIVATOR} "$@"
  code=$?
  [ "$code" != 0 ] || [ "$reboot_now" = 0 ] || exit 194
  exit "$code"
fi
script=$(mktemp "${"$"}{TMPDIR:-/tmp}/nixship-activate.XXXXXX") || {
  echo "nixship: cannot create a temporary file" >&2
  exit 1
}
trap 'rm -f "$script"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# activate.sh, its comments left out, gzip-compressed and base64-encoded (gzip checks its CRC).
if ! base64 -d <<'${HEREDOC_END}' | gzip -dc >"$script"`;

const POSTLUDE = `${HEREDOC_END}
then
  echo "nixship: cannot decode the embedded activate.sh (base64, gzip)" >&2
  exit 1
fi
run_activation sh "$script" "$@"
code=$?
rm -f "$script"
# The boot activation went through: exit 194 has SSM's agent reboot the instance, then run this
# document again (which then judges the boot).
[ "$code" != 0 ] || [ "$reboot_now" = 0 ] || exit 194
exit "$code"`;

/** Characters per line of the embedded base64 (as base64(1) wraps it). */
const BASE64_LINE = 76;

/** activate.sh as the document embeds it: compacted, gzipped (level 9, no name or time), base64. */
export function embeddedScript(): string[] {
  const packed = gzipSync(Buffer.from(compactActivateScript()), { level: 9 });
  const text = packed.toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += BASE64_LINE) lines.push(text.slice(i, i + BASE64_LINE));
  return lines;
}

/** The script a document embeds, decoded (what `nixship ssm document --script` prints). */
export function scriptOf(document: SsmCommandDocument): string {
  const run = document.mainSteps[0]?.inputs.runCommand ?? [];
  const start = run.findIndex((line) => line.includes(`<<'${HEREDOC_END}'`));
  const end = run.indexOf(HEREDOC_END, start + 1);
  if (start < 0 || end < 0) throw new Error("the document embeds no activate.sh");
  return gunzipSync(Buffer.from(run.slice(start + 1, end).join(""), "base64")).toString("utf8");
}

/** The Command document, with activate.sh (as this nixship ships it) embedded. */
export function ssmDocument(): SsmCommandDocument {
  const script = embeddedScript();
  return {
    schemaVersion: "2.2",
    description:
      "nixship: activate a NixOS system from a binary cache (signatures required), roll back, or report status, through nixship's activate.sh (embedded gzip-compressed and base64-encoded; `nixship ssm document --script` prints it). Its last line of output is activate.sh's JSON result.",
    parameters: SSM_PARAMETERS,
    mainSteps: [
      {
        action: "aws:runShellScript",
        name: "activate",
        precondition: { StringEquals: ["platformType", "Linux"] },
        inputs: {
          timeoutSeconds: "{{ ExecutionTimeout }}",
          runCommand: [...PRELUDE.split("\n"), ...script, ...POSTLUDE.split("\n")],
        },
      },
    ],
  };
}

/**
 * The document as `nixship ssm document` prints it (and terraform/modules/ssm-document keeps it):
 * indented JSON, one script line per line, but the script's lines without indentation, which
 * would cost SSM's 64 KiB limit about 10 bytes a line.
 */
export function formatSsmDocument(document: SsmCommandDocument): string {
  const mark = "\u0000runCommand\u0000";
  const marked = {
    ...document,
    mainSteps: document.mainSteps.map((step) => ({
      ...step,
      inputs: { ...step.inputs, runCommand: mark },
    })),
  };
  const lines = document.mainSteps.map((step) => step.inputs.runCommand);
  let i = 0;
  const text = JSON.stringify(marked, null, 2).replace(JSON.stringify(mark), () => {
    const run = lines[i++] ?? [];
    return `[\n${run.map((line) => JSON.stringify(line)).join(",\n")}\n]`;
  });
  return `${text}\n`;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

/** Every parameter's value, given or default, each checked against its allowedPattern. */
export function resolveParameters(
  document: SsmCommandDocument,
  given: Readonly<Record<string, string>>,
): Map<string, string> {
  for (const name of Object.keys(given)) {
    if (!Object.hasOwn(document.parameters, name)) {
      throw new InputError("ssm-unknown-parameter", `the SSM document has no parameter ${name}`, {
        hint: `its parameters are ${Object.keys(document.parameters).join(", ")}`,
      });
    }
  }
  const values = new Map<string, string>();
  for (const [name, parameter] of Object.entries(document.parameters)) {
    const value = given[name] ?? parameter.default;
    if (value === undefined) {
      throw new InputError("ssm-missing-parameter", `the SSM parameter ${name} is required`);
    }
    if (!new RegExp(parameter.allowedPattern).test(value)) {
      throw new InputError(
        "ssm-bad-parameter",
        // Quoted without a credential its URL may carry (a presigned URL's signature and token).
        `the SSM parameter ${name} does not match its allowedPattern: ${JSON.stringify(shownUrl(value).slice(0, 200))}`,
        { hint: `${name}: ${parameter.description} (pattern ${parameter.allowedPattern})` },
      );
    }
    values.set(name, value);
  }
  return values;
}

/**
 * The shell the document's runCommand would execute with these parameters, as SSM makes it:
 * each value validated, pasted in place of its `{{ Name }}`, and the lines joined.
 */
export function renderRunCommand(
  document: SsmCommandDocument,
  parameters: Readonly<Record<string, string>>,
): string {
  const values = resolveParameters(document, parameters);
  const step = document.mainSteps[0];
  if (step === undefined) throw new Error("the SSM document has no step");
  return step.inputs.runCommand
    .join("\n")
    .replace(PLACEHOLDER, (whole, name: string) => values.get(name) ?? whole);
}

/** The HealthChecks parameter's value for these command checks. */
export function encodeHealthChecks(
  checks: readonly { readonly run: string; readonly timeout: number; readonly retry?: boolean }[],
): string {
  if (checks.length === 0) return "";
  const list = checks.map((c) => ({
    run: c.run,
    timeout: c.timeout,
    ...(c.retry === false ? { retry: false } : {}),
  }));
  return Buffer.from(JSON.stringify(list), "utf8").toString("base64");
}
