// The fleets of other deployers that `nixship init --from` converts, written from their own
// manuals' examples: colmena's tutorial hive.nix (and its keys and apply-local examples) and
// deploy-rs's README flake. Where they import nixpkgs they get the stand-in (stand-in-nixpkgs/:
// its NixOS evaluation gives each node an example system named by its networking.hostName), and
// deploy-rs's lib is a stand-in of its activate.nixos (a derivation named as deploy-rs names it,
// `activatable-` and the toplevel's name). Each flake binds `nixship.lib` to this checkout's
// packaging/nix/lib.nix, so the output line init prints can be added as it is.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const STAND_IN_NIXPKGS = join(ROOT, "test/support/stand-in-nixpkgs");
const LIB = join(ROOT, "packaging/nix/lib.nix");

/** Where each node is reached; and Nix to add to a node's module (e.g. a key, a throw). */
export interface HiveOptions {
  readonly hostA: string;
  readonly hostB: string;
  readonly hostBPort?: number;
  readonly extraA?: string;
  readonly extraB?: string;
}

/** colmena's tutorial hive.nix, its nixpkgs the stand-in (`import <nixpkgs>` and a path). */
export function tutorialHive(o: HiveOptions): string {
  return `{
  meta = {
    # The Nixpkgs lambda (e.g., import <nixpkgs>)
    nixpkgs = import ${STAND_IN_NIXPKGS};

    # You can also override Nixpkgs by node!
    nodeNixpkgs = {
      host-b = ${STAND_IN_NIXPKGS};
    };
  };

  defaults = { pkgs, ... }: {
    # This module will be imported by all hosts
    environment.systemPackages = with pkgs; [
      vim wget curl
    ];
  };

  host-a = { name, nodes, ... }: {
    # The name and nodes parameters are supported in Colmena,
    # allowing you to reference configurations in other nodes.
    networking.hostName = name;
    time.timeZone = nodes.host-b.config.time.timeZone;

    boot.loader.grub.device = "/dev/sda";
    fileSystems."/" = {
      device = "/dev/sda1";
      fsType = "ext4";
    };
    deployment.targetHost = ${JSON.stringify(o.hostA)};
${o.extraA ?? ""}
  };

  host-b = {
    deployment.targetHost = ${JSON.stringify(o.hostB)};
${o.hostBPort === undefined ? "" : `    deployment.targetPort = ${o.hostBPort};`}
    # Override the default for this target host
    deployment.replaceUnknownProfiles = false;
    deployment.tags = [ "web" "infra-lax" ];

    time.timeZone = "America/Los_Angeles";

    boot.loader.grub.device = "/dev/sda";
    fileSystems."/" = {
      device = "/dev/sda1";
      fsType = "ext4";
    };
${o.extraB ?? ""}
  };
}
`;
}

/** colmena's keys example (features/keys.md), for host-a. */
export const KEYS_EXAMPLE = `    security.acme.certs."my-site.tld".credentialsFile = "/run/keys/acme-credentials.secret";
    deployment.keys."acme-credentials.secret" = {
      keyCommand = [ "vault" "read" "-field=env" "secret/dns01" ];
      destDir = "/run/keys";
      user = "acme";
      group = "nginx";
      permissions = "0640";
      uploadAt = "pre-activation";
    };
    deployment.keys."db-password" = { keyFile = "/root/db-password"; };`;

/** A flake in `dir` whose outputs are `outputs` (Nix attributes, `self` and `nixship` in scope). */
export async function writeFlakeWith(dir: string, outputs: string): Promise<void> {
  await writeFile(
    join(dir, "flake.nix"),
    `{
  outputs = { self }:
    let
      nixship = { lib = import ${LIB}; };
      system = builtins.currentSystem;
      # Stand-ins for the flake inputs nixpkgs and deploy-rs.
      nixpkgs = { lib = (import ${STAND_IN_NIXPKGS} { inherit system; }).lib; };
      deploy-rs.lib.\${system}.activate.nixos = base: let toplevel = base.config.system.build.toplevel; in derivation {
        name = "activatable-" + toplevel.name;
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" "mkdir $out && ln -s \${toplevel}/bin $out/bin && : > $out/deploy-rs-activate" ];
      };
    in {
${outputs}
    };
}
`,
  );
}

/** Adds `line` (the output init printed) to the outputs of the flake in `dir`. */
export async function addOutput(dir: string, line: string): Promise<void> {
  const file = join(dir, "flake.nix");
  const text = await readFile(file, "utf8");
  await writeFile(file, text.replace("    in {\n", `    in {\n      ${line}\n`));
}

/** deploy-rs's README flake: one node per entry of `hosts` (name → hostname, and more Nix). */
export async function writeDeployRsFlake(
  dir: string,
  hosts: Readonly<Record<string, { hostname: string | null; extra?: string }>>,
): Promise<void> {
  const outputs: string[] = [];
  for (const [name, { hostname, extra }] of Object.entries(hosts)) {
    await mkdir(join(dir, name), { recursive: true });
    await writeFile(
      join(dir, name, "configuration.nix"),
      `{ ... }: { networking.hostName = ${JSON.stringify(name)}; }\n`,
    );
    outputs.push(`      nixosConfigurations.${name} = nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [ ./${name}/configuration.nix ];
      };

      deploy.nodes.${name} = {
${hostname === null ? "" : `        hostname = ${JSON.stringify(hostname)};`}
        profiles.system = {
          user = "root";
          path = deploy-rs.lib.\${system}.activate.nixos self.nixosConfigurations.${name};
        };
${extra ?? ""}
      };`);
  }
  await writeFlakeWith(dir, outputs.join("\n\n"));
}
