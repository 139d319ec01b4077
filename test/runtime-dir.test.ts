// Root's runtime directory when another user made `/tmp/nixship-0` first: nixship still runs,
// in a directory no other user can have made, and never uses theirs. Each case runs in a
// private mount namespace (unshare -m) with tmpfs on /tmp and /run, so the machine's own /tmp
// and /run are never touched; the real code runs as root, `nobody` makes the directory. The
// checkout is bound at /mnt first: a checkout under /tmp (or /run) would be hidden by the tmpfs.
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { run } from "../support/cli.js";

const NOBODY = 65534;
/** The checkout, and where each case sees it (bound there before /tmp and /run are hidden). */
const CHECKOUT = fileURLToPath(new URL("..", import.meta.url));
const SEEN_AT = "/mnt";
const RUNTIME_DIR = `file://${SEEN_AT}/dist/util/runtime-dir.js`;

/**
 * Runs `script` (sh) as root in a private mount namespace whose /tmp is a fresh tmpfs (1777,
 * as /tmp is) holding `/tmp/nixship-0`, made by nobody (0700, or `mode`), and whose /run is a
 * fresh tmpfs of mode `runMode`. $NODE and $BIN name node and nixship's binary.
 */
async function inPrivateTmp(
  script: string,
  options: { readonly runMode: string; readonly mode?: string },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const setup = [
    "set -e",
    "mount --make-rprivate /",
    `mount --bind "$CHECKOUT" ${SEEN_AT}`,
    "mount -t tmpfs -o mode=1777 tmpfs /tmp",
    `mount -t tmpfs -o mode=${options.runMode} tmpfs /run`,
    `setpriv --reuid ${NOBODY} --regid ${NOBODY} --clear-groups mkdir -m ${options.mode ?? "700"} /tmp/nixship-0`,
    `setpriv --reuid ${NOBODY} --regid ${NOBODY} --clear-groups touch /tmp/nixship-0/theirs`,
    "set +e",
    script,
  ].join("\n");
  return run("unshare", ["-m", "sh", "-c", setup], {
    env: {
      NODE: process.execPath,
      CHECKOUT,
      BIN: `${SEEN_AT}/dist/cli/bin.js`,
      TMPDIR: undefined,
      XDG_RUNTIME_DIR: undefined,
    },
  });
}

/** Prints the directory privateRuntimeDir gives, its mode and owner, and what /tmp holds after. */
const SHOW_DIR = `"$NODE" --input-type=module -e 'import { privateRuntimeDir } from "${RUNTIME_DIR}"; import { statSync } from "node:fs"; const d = privateRuntimeDir(); const s = statSync(d); console.log(d, (s.mode & 0o777).toString(8), s.uid);'
echo "rc=$?"
echo "tmp: $(ls -A /tmp | tr '\\n' ' ')"
echo "theirs: $(ls -A /tmp/nixship-0) $(stat -c '%a %u' /tmp/nixship-0)"`;

describe("a /tmp/nixship-0 made first by another user", () => {
  it("root uses /run/nixship-deployer when only root may write /run, and leaves theirs alone", async () => {
    const r = await inPrivateTmp(SHOW_DIR, { runMode: "755" });
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n")).toEqual([
      "/run/nixship-deployer 700 0",
      "rc=0",
      "tmp: nixship-0 ",
      `theirs: theirs 700 ${NOBODY}`,
      "",
    ]);
  });

  it("without a /run of root's own, root makes a fresh directory of its own in /tmp, and removes it on exit", async () => {
    // 1777: anyone may write /run here, so root's runtime directory cannot go there.
    for (const mode of ["700", "777"]) {
      const r = await inPrivateTmp(SHOW_DIR, { runMode: "1777", mode });
      expect(r.stderr).toBe("");
      const [chosen, ...rest] = r.stdout.split("\n");
      expect(chosen).toMatch(/^\/tmp\/nixship-0-[A-Za-z0-9]{6} 700 0$/);
      // Gone once the process ended; nobody's directory as it was.
      expect(rest).toEqual(["rc=0", "tmp: nixship-0 ", `theirs: theirs ${mode} ${NOBODY}`, ""]);
    }
  });

  it("root's nixship runs a command that opens ssh connections, where it exited 1 before", async () => {
    // An ssh host at a loopback port nothing listens on: the command reaches ssh (and so makes
    // its control directory) and reports the host unreachable.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    const fleet = JSON.stringify({
      hosts: {
        web1: { address: "127.0.0.1", system: `/nix/store/${"a".repeat(32)}-system` },
      },
      ssh: { user: "root", configFile: "/tmp/ssh_config" },
    });
    const script = `printf '%s' '${fleet}' > /tmp/fleet.json
printf 'Host *\\n  Port ${port}\\n  ConnectTimeout 5\\n' > /tmp/ssh_config
"$NODE" "$BIN" status --fleet /tmp/fleet.json --json
echo "rc=$?"
echo "theirs: $(ls -A /tmp/nixship-0)"`;
    const r = await inPrivateTmp(script, { runMode: "1777" });
    const at = r.stdout.lastIndexOf("\nrc=");
    const doc = JSON.parse(r.stdout.slice(0, at)) as { error?: { code: string } };
    // Before, this was the error runtime-dir-unsafe, and nothing was asked of the host.
    expect(doc).toEqual({
      hosts: [
        {
          host: "web1",
          mode: "ssh",
          source: "live",
          inStep: false,
          reachable: false,
          hostState: "unreachable",
          error: `ssh: connect to host 127.0.0.1 port ${port}: Connection refused`,
        },
      ],
    });
    // 1: a host is not in step; theirs as it was.
    expect(r.stdout.slice(at + 1).split("\n")).toEqual(["rc=1", "theirs: theirs", ""]);
  });
});
