// A small closure built by the real local Nix: three paths that reference each other, with
// executables, symlinks (one dangling), an empty directory, an empty file and a 9 MB file (more than two 4 MiB zstd frames).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runOk } from "../../support/cli.js";

export const FIXTURE_EXPRESSION = `
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
    PATH = "/usr/bin:/bin";
  };
  lib = mk "nixship-fixture-lib" ''
    mkdir -p $out/lib $out/empty
    echo "library v1" > $out/lib/data.txt
    : > $out/lib/empty-file
    yes 0123456789abcdef | head -c 9000000 > $out/lib/big.bin
  '';
  tool = mk "nixship-fixture-tool" ''
    mkdir -p $out/bin
    printf '#!/bin/sh\\necho tool using ${"$"}{lib}\\n' > $out/bin/tool
    chmod +x $out/bin/tool
    ln -s ${"$"}{lib}/lib/data.txt $out/data
    ln -s /nonexistent/dangling $out/dangling
  '';
in mk "nixship-fixture-top" ''
  mkdir -p $out
  echo ${"$"}{tool} > $out/tool-path
  ln -s ${"$"}{tool}/bin/tool $out/run
''
`;

/** Builds the fixture (cached by Nix after the first time) and returns the top store path. */
export async function buildFixtureClosure(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-fixture-"));
  try {
    const file = join(dir, "fixture.nix");
    await writeFile(file, FIXTURE_EXPRESSION);
    return (await runOk("nix-build", ["--no-out-link", file])).trim();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface PathMeta {
  readonly path: string;
  readonly narHash: string;
  readonly narSize: number;
  readonly references: readonly string[];
}

/** `nix path-info --json --recursive` in a store, as a map from path to metadata. */
export async function closureMeta(root: string, store?: string): Promise<Map<string, PathMeta>> {
  const args = ["path-info", "--json", "--recursive", ...(store ? ["--store", store] : []), root];
  const list = JSON.parse(await runOk("nix", args)) as PathMeta[];
  return new Map(
    list.map((m) => [
      m.path,
      {
        path: m.path,
        narHash: m.narHash,
        narSize: m.narSize,
        references: [...m.references].sort(),
      },
    ]),
  );
}
