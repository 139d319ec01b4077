// `nixship ssm document`: prints the SSM Command document that runs activate.sh on ssm hosts,
// for `aws ssm create-document`, Terraform or the console.
import { formatSsmDocument, scriptOf, ssmDocument } from "../delivery/ssm-document.js";
import { UsageError } from "../errors.js";
import { SSM_DEFAULTS } from "../fleet/fleet.js";
import { type Command, parseFlags, refuseArguments } from "./command.js";

const NAME_PATTERN = /^[a-zA-Z0-9_.-]{3,128}$/;

export const ssmDocumentCommand: Command = {
  path: ["ssm", "document"],
  summary: "print the SSM Command document that runs activate.sh on ssm hosts",
  help: `Usage: nixship ssm document [--name NAME] [--script] [--json]

Prints the SSM Command document (schemaVersion 2.2, JSON) that ssm hosts run: one
aws:runShellScript step with nixship's activate.sh embedded, as this version of nixship
ships it. stdout holds only the document; on stderr, the command that creates it.

The script is embedded without its comments, gzip-compressed and base64-encoded (SSM takes
documents up to 64 KiB); the step decodes it with base64 and gzip (which checks its CRC)
before it runs it. --script prints the embedded script, decoded: what the hosts run.

Create it once per account and region, under the name the fleet file's "ssm.documentName"
gives (default ${SSM_DEFAULTS.documentName}), and update it when you upgrade nixship:

  nixship ssm document > doc.json
  aws ssm create-document --document-type Command --document-format JSON \\
    --content file://doc.json --name ${SSM_DEFAULTS.documentName}
  aws ssm update-document --document-version '$LATEST' \\
    --content file://doc.json --name ${SSM_DEFAULTS.documentName}    (later versions; then
    make the new version the default with 'aws ssm update-document-default-version')

Parameters (each checked by SSM against its allowedPattern; none can reach the shell
unquoted):
  Command            activate (default) | rollback | status
  StorePath          the system to activate: /nix/store/…
  Action             switch (default) | boot | test | dry-activate
  Substituters       space-separated http(s):// or s3:// caches (signatures required)
  TrustedPublicKeys  space-separated name:base64 keys
  HealthChecks       base64 of [{"run": "command", "timeout": seconds}, …]: run on the host
                     after the switch; a failure rolls the host back
  Generation         for rollback: the generation to go back to (default: the previous one)
  ExecutionTimeout   seconds the script may run (default 3600)

The last line of the command's output is activate.sh's JSON result. 'nixship deploy' sends
the document with AWS Run Command; the same document and parameters also work as a State
Manager association, which keeps instances (e.g. all with tag Role=web) on a store path:

  aws ssm create-association --name ${SSM_DEFAULTS.documentName} \\
    --targets Key=tag:Role,Values=web \\
    --parameters 'StorePath=/nix/store/…-nixos-system-web,Substituters=s3://cache?region=eu-west-1,TrustedPublicKeys=cache-1:…'

Options:
  --name NAME   the document's name in the printed create-document command
                (default ${SSM_DEFAULTS.documentName}); the document itself does not hold it
  --script      print the activate.sh the document embeds, decoded, instead of the document
  --json        accepted for symmetry with other commands: the document is JSON (not with
                --script)

Examples:
  nixship ssm document > doc.json
  nixship ssm document --name nixship-activate-staging | jq '.parameters | keys'`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { name: { type: "string" }, script: { type: "boolean" }, json: { type: "boolean" } },
      "ssm document",
    );
    refuseArguments(positionals, "ssm document");
    const name = values.name ?? SSM_DEFAULTS.documentName;
    if (!NAME_PATTERN.test(name)) {
      throw new UsageError(
        `ssm document: --name must be 3 to 128 letters, digits, '_', '.' or '-', got '${name}'`,
      );
    }
    if (values.script && values.json) {
      throw new UsageError(
        "ssm document: --script prints a shell script, not JSON: give one of --script and --json",
      );
    }
    if (values.script) {
      io.stdout.write(`${scriptOf(ssmDocument())}\n`);
      return 0;
    }
    io.stdout.write(formatSsmDocument(ssmDocument()));
    io.stderr.write(
      `create it with: aws ssm create-document --document-type Command --document-format JSON --content file://doc.json --name ${name}\n`,
    );
    return 0;
  },
};
