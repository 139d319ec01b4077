// The example systems in examples/ honour NixOS's switch-to-configuration contract, the way the
// lab, the benchmarks and the demo rely on it: built by the real Nix, activated by root in
// throwaway hosts (private /run, network and pid namespaces), queried over HTTP with curl.
import { beforeAll, describe, expect, it } from "vitest";
import { run, runOk } from "../support/cli.js";
import {
  buildExampleSystems,
  DELTA_EXAMPLE_SYSTEMS,
  DIFF_EXAMPLE_SYSTEMS,
  EXAMPLE_SYSTEMS,
  EXAMPLES_DIR,
  type ExampleSystem,
  runInThrowawayHost,
} from "./support/example-systems.js";

let systems: Record<ExampleSystem, string>;

beforeAll(async () => {
  systems = await buildExampleSystems();
});

/** The systems as environment variables for a host script: web-v1 → $web_v1. */
function systemEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(systems).map(([name, path]) => [name.replaceAll("-", "_"), path]),
  );
}

const versionJson = (name: ExampleSystem, version: string) =>
  JSON.stringify({ name, version, system: systems[name] });

describe("the example flake", () => {
  for (const platform of ["x86_64-linux", "aarch64-linux"]) {
    it(`lists the example systems for ${platform}`, async () => {
      const names = JSON.parse(
        await runOk("nix", [
          "eval",
          "--json",
          `path:${EXAMPLES_DIR}#packages.${platform}`,
          "--apply",
          "builtins.attrNames",
        ]),
      );
      expect(names).toEqual(
        [...EXAMPLE_SYSTEMS, ...DIFF_EXAMPLE_SYSTEMS, ...DELTA_EXAMPLE_SYSTEMS].sort(),
      );
    });
  }

  it("has one rebuild for deltas: the same names, every path new, and a zstd in sw/bin", async () => {
    const installables = DELTA_EXAMPLE_SYSTEMS.map((name) => `path:${EXAMPLES_DIR}#${name}`);
    const built = JSON.parse(
      await runOk("nix", ["build", "--no-link", "--json", ...installables]),
    ) as { outputs: { out: string } }[];
    const closures = await Promise.all(
      built.map(async ({ outputs }) =>
        (await runOk("nix-store", ["-qR", outputs.out])).trim().split("\n").sort(),
      ),
    );
    const [v1, v2] = closures as [string[], string[]];
    const names = (paths: string[]) => paths.map((p) => p.slice(44)).sort();
    expect(names(v1)).toEqual(names(v2));
    expect(v1.filter((p) => v2.includes(p))).toEqual([]);
    expect(names(v1)).toContain("zstd-1.5.4-bin");
    for (const { outputs } of built) {
      const version = await runOk(`${outputs.out}/sw/bin/zstd`, ["-V"]);
      expect(version).toMatch(/v\d+\.\d+\.\d+/);
    }
  });

  it("builds toplevels with switch-to-configuration, nixos-version and small, overlapping closures", async () => {
    const closures = new Map<ExampleSystem, string[]>();
    for (const name of EXAMPLE_SYSTEMS) {
      const top = systems[name];
      const info = JSON.parse(
        await runOk("nix", ["path-info", "--json", "--recursive", "--closure-size", top]),
      ) as { path: string; closureSize: number }[];
      closures.set(
        name,
        info.map((p) => p.path),
      );
      const self = info.find((p) => p.path === top);
      expect(self?.closureSize, `closure of ${name}`).toBeLessThan(64 * 1024);
      expect(info.length, `closure of ${name}: ${info.map((p) => p.path)}`).toBeGreaterThanOrEqual(
        3,
      );
      const version = await run("cat", [`${top}/nixos-version`]);
      expect(version.stdout.trim(), `${top}/nixos-version`).toBe(name);
      const stc = await run("test", ["-x", `${top}/bin/switch-to-configuration`]);
      expect(stc.code, `${top}/bin/switch-to-configuration is executable`).toBe(0);
    }
    const share = closures.get("web-v1")?.find((p) => p.endsWith("-example-web-share"));
    expect(share, "web-v1's closure has the shared example-web-share path").toBeDefined();
    const etcs = new Set<string>();
    for (const [name, paths] of closures) {
      expect(paths, `${name} references the shared path`).toContain(share);
      const etc = paths.filter((p) => /-example-web-etc-/.test(p));
      expect(etc, `${name} has one per-version path`).toHaveLength(1);
      etcs.add(etc[0] ?? "");
    }
    expect(etcs.size, "every version has its own per-version path").toBe(EXAMPLE_SYSTEMS.length);
  });

  it("compiles its web service without a warning (-Wall -Wextra)", async () => {
    const r = await run("cc", [
      "-std=c11",
      "-O2",
      "-Wall",
      "-Wextra",
      "-Werror",
      "-c",
      "-o",
      "/dev/null",
      `${EXAMPLES_DIR}/web/server.c`,
    ]);
    expect(r.code, `cc:\n${r.stdout}${r.stderr}`).toBe(0);
  });

  it("has a shellcheck-clean switch-to-configuration in every system", async () => {
    const files = EXAMPLE_SYSTEMS.map((name) => `${systems[name]}/bin/switch-to-configuration`);
    const r = await run("shellcheck", ["--shell=sh", ...files]);
    expect(r.code, `shellcheck:\n${r.stdout}${r.stderr}`).toBe(0);
  });
});

describe("switch-to-configuration on a throwaway host", () => {
  it("switches between good versions; dry-activate, boot and bad actions change nothing", async () => {
    const host = await runInThrowawayHost(
      `
act v1 "$web_v1" switch
current v1.current
service_pid v1.pid
get v1.root /
get v1.version /version
get v1.health /health
get v1.missing /no-such-page
v1pid=$(cat /run/nixship-example-web.pid)
put v1.session "$(sed 's/.*) //' "/proc/$v1pid/stat" | cut -d' ' -f4)"
put v1.stdin "$(readlink "/proc/$v1pid/fd/0")"
put v1.stdout "$(readlink "/proc/$v1pid/fd/1")"

act dry "$web_v2" dry-activate
act boot "$web_v2" boot
current unchanged.current
service_pid unchanged.pid
state unchanged.v1state "$v1pid"
get unchanged.version /version

act v2 "$web_v2" switch
current v2.current
service_pid v2.pid
state v2.v1state "$v1pid"
get v2.version /version
get v2.health /health

act v3 "$web_v3" test
current v3.current
get v3.version /version

# The caller's whole session is killed once the switch returns, as when an SSH session ends.
setsid -w sh -c '"$web_v1"/bin/switch-to-configuration switch 2>/dev/null; kill -s KILL 0' 2>/dev/null
service_pid session.pid
get session.version /version
act again "$web_v1" switch
service_pid again.pid

act bogus "$web_v1" frobnicate
act none "$web_v1"
act two "$web_v1" switch boot
current bad.current
service_pid bad.pid
get bad.version /version
`,
      systemEnv(),
    );
    const t = host.transcript;
    const v = (key: string) => host.get(key);

    expect(v("v1.code"), `switch to web-v1 exits 0\n${t}`).toBe("0");
    expect(v("v1.current"), `/run/current-system → web-v1\n${t}`).toBe(systems["web-v1"]);
    expect(v("v1.pid"), `pid file after switch to web-v1\n${t}`).toMatch(/^\d+$/);
    expect([v("v1.root.status"), v("v1.root.body")], t).toEqual([
      "200",
      "example web system web-v1",
    ]);
    expect([v("v1.version.status"), v("v1.version.body")], t).toEqual([
      "200",
      versionJson("web-v1", "1"),
    ]);
    expect([v("v1.health.status"), v("v1.health.body")], t).toEqual(["200", "ok"]);
    expect(v("v1.missing.status"), `an unknown route is 404\n${t}`).toBe("404");
    expect(v("v1.session"), `the service leads its own session\n${t}`).toBe(v("v1.pid"));
    expect(v("v1.stdin"), `the service's stdin\n${t}`).toBe("/dev/null");
    expect(v("v1.stdout"), `the service's output\n${t}`).toBe("/run/nixship-example-web.log");

    expect(v("dry.code"), `dry-activate exits 0\n${t}`).toBe("0");
    expect(v("dry.stderr"), t).toContain("would stop example-web (web-v1)");
    expect(v("dry.stderr"), t).toContain("would start example-web (web-v2)");
    expect(v("boot.code"), `boot exits 0\n${t}`).toBe("0");
    expect(v("boot.stderr"), t).toContain("will be used at the next boot");
    expect(v("unchanged.current"), `dry-activate and boot leave current-system\n${t}`).toBe(
      systems["web-v1"],
    );
    expect(v("unchanged.pid"), `dry-activate and boot leave the service\n${t}`).toBe(v("v1.pid"));
    expect(v("unchanged.v1state"), t).not.toBe("gone");
    expect(v("unchanged.version.body"), t).toBe(versionJson("web-v1", "1"));

    expect(v("v2.code"), `switch to web-v2 exits 0\n${t}`).toBe("0");
    expect(v("v2.current"), t).toBe(systems["web-v2"]);
    expect(v("v2.pid"), `a new service runs web-v2\n${t}`).not.toBe(v("v1.pid"));
    expect(["gone", "Z"], `web-v1's service has exited\n${t}`).toContain(v("v2.v1state"));
    expect(v("v2.version.body"), t).toBe(versionJson("web-v2", "2"));
    expect(v("v2.health.status"), t).toBe("200");

    expect(v("v3.code"), `test (activate now) to web-v3 exits 0\n${t}`).toBe("0");
    expect(v("v3.current"), t).toBe(systems["web-v3"]);
    expect(v("v3.version.body"), t).toBe(versionJson("web-v3", "3"));

    expect(v("session.version.body"), `the service outlived its caller's session\n${t}`).toBe(
      versionJson("web-v1", "1"),
    );
    expect(v("again.code"), `switching to the running system again exits 0\n${t}`).toBe("0");
    expect(v("again.stderr"), t).toContain("already runs this system");
    expect(v("again.pid"), `the unchanged service is left running\n${t}`).toBe(v("session.pid"));

    for (const key of ["bogus", "none", "two"]) {
      expect(v(`${key}.code`), `bad usage (${key}) exits 1\n${t}`).toBe("1");
      expect(v(`${key}.stderr`), t).toContain("usage:");
      expect(v(`${key}.stdout`), `nothing on stdout\n${t}`).toBe("");
    }
    expect(v("bad.current"), `bad usage changes nothing\n${t}`).toBe(systems["web-v1"]);
    expect(v("bad.pid"), t).toBe(v("again.pid"));
    expect(v("bad.version.body"), t).toBe(versionJson("web-v1", "1"));
  });

  it("web-broken fails its health check, web-failing exits 4, and a good version switches in again", async () => {
    const host = await runInThrowawayHost(
      `
act v1 "$web_v1" switch
act broken "$web_broken" switch
current broken.current
service_pid broken.pid
get broken.root /
get broken.version /version
get broken.health /health
brokenpid=$(cat /run/nixship-example-web.pid)

act failing "$web_failing" switch
current failing.current
if [ -e /run/nixship-example-web.pid ]; then put failing.pidfile present; else put failing.pidfile absent; fi
state failing.brokenstate "$brokenpid"
get failing.root /

act dry "$web_v2" dry-activate
act v2 "$web_v2" switch
current v2.current
get v2.version /version
get v2.health /health
`,
      systemEnv(),
    );
    const t = host.transcript;
    const v = (key: string) => host.get(key);

    expect(v("v1.code"), t).toBe("0");
    expect(v("broken.code"), `web-broken activates cleanly\n${t}`).toBe("0");
    expect(v("broken.current"), t).toBe(systems["web-broken"]);
    expect([v("broken.root.status"), v("broken.root.body")], t).toEqual([
      "200",
      "example web system web-broken",
    ]);
    expect(v("broken.version.body"), t).toBe(versionJson("web-broken", "broken"));
    expect(
      [v("broken.health.status"), v("broken.health.body")],
      `web-broken's /health\n${t}`,
    ).toEqual(["500", "unhealthy"]);

    expect(v("failing.code"), `web-failing's switch exits 4, as NixOS does\n${t}`).toBe("4");
    expect(v("failing.stderr"), t).toContain(
      "warning: the following units failed: example-web.service",
    );
    expect(v("failing.current"), `current-system still moves to web-failing\n${t}`).toBe(
      systems["web-failing"],
    );
    expect(v("failing.pidfile"), `no pid file is left\n${t}`).toBe("absent");
    expect(["gone", "Z"], `web-broken's service was stopped\n${t}`).toContain(
      v("failing.brokenstate"),
    );
    expect(v("failing.root.status"), `nothing answers on port 80\n${t}`).toBe("000");

    expect(v("dry.stderr"), t).toContain("would start example-web (web-v2)");
    expect(v("dry.stderr"), `nothing runs, so nothing to stop\n${t}`).not.toContain("would stop");
    expect(v("v2.code"), `switching back to a good version works\n${t}`).toBe("0");
    expect(v("v2.current"), t).toBe(systems["web-v2"]);
    expect(v("v2.version.body"), t).toBe(versionJson("web-v2", "2"));
    expect(v("v2.health.status"), t).toBe("200");
  });
});

describe("the example service on a throwaway host", () => {
  it("answers HEAD and queries, bounds its requests, reads its token once, ignores SIGHUP and stops on SIGTERM", async () => {
    const host = await runInThrowawayHost(
      `
act v1 "$web_v1" switch
pid=$(cat /run/nixship-example-web.pid)
put head "$(curl -sI --max-time 5 http://127.0.0.1:80/version | tr -d '\\r' | grep -i -e '^HTTP/' -e '^connection:' -e '^content-length:')"
get query "/version?probe=1"
get secret /secret
put post.status "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:80/secret)"
put big.status "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "x-big: $(head -c 20000 /dev/zero | tr '\\0' a)" http://127.0.0.1:80/)"
put bad.status "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' --request-target 'a b' http://127.0.0.1:80/)"
# A client that connects and never sends its request does not keep the service from others.
sleep 20 | curl -s --max-time 20 telnet://127.0.0.1:80 >/dev/null 2>&1 &
tries=50
until grep -qs '^ *[0-9]*: [0-9A-F]*:0050 [0-9A-F]*:[0-9A-F]* 01 ' /proc/net/tcp || [ "$tries" = 0 ]; do
  tries=$((tries - 1))
  sleep 0.1
done
get stalled /health

mkdir -p /run/keys && printf 'the token' >/run/keys/web-token
act v2 "$web_v2" switch
put token.digest "$(printf 'the token' | sha256sum | cut -d' ' -f1)"
printf 'another token' >/run/keys/web-token
get token /secret
pid=$(cat /run/nixship-example-web.pid)
kill -s HUP "$pid"
get hup /version
kill -s TERM "$pid"
tries=50
while [ -e "/proc/$pid" ] && [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -c1)" != Z ] && [ "$tries" -gt 0 ]; do
  tries=$((tries - 1))
  sleep 0.1
done
state term "$pid"
put log "$(cat /run/nixship-example-web.log)"
`,
      systemEnv(),
    );
    const t = host.transcript;
    const v = (key: string) => host.get(key);
    expect(v("head").split("|"), `HEAD /version\n${t}`).toEqual([
      "HTTP/1.1 200 OK",
      "connection: close",
      `content-length: ${versionJson("web-v1", "1").length + 1}`,
    ]);
    expect([v("query.status"), v("query.body")], t).toEqual(["200", versionJson("web-v1", "1")]);
    expect(v("secret.body"), `no token on the host\n${t}`).toBe(JSON.stringify({ sha256: null }));
    expect(v("post.status"), `only GET and HEAD are routed\n${t}`).toBe("404");
    expect(v("big.status"), `a request head past 8 KiB\n${t}`).toBe("431");
    expect(v("bad.status"), `a malformed request line\n${t}`).toBe("400");
    expect([v("stalled.status"), v("stalled.body")], t).toEqual(["200", "ok"]);
    expect(v("token.body"), `the token as it was at start\n${t}`).toBe(
      JSON.stringify({ sha256: v("token.digest") }),
    );
    expect(v("hup.body"), `SIGHUP is ignored\n${t}`).toBe(versionJson("web-v2", "2"));
    expect(["gone", "Z"], `SIGTERM stops it\n${t}`).toContain(v("term"));
    const log = v("log").split("|").slice(-2);
    expect(log[0], t).toMatch(
      /^\S+Z example-web: web-v2 \(\/nix\/store\/\S+-example-web-system-v2\) listening on 0\.0\.0\.0:80$/,
    );
    expect(log[1], t).toMatch(/^\S+Z example-web: web-v2 stopping on SIGTERM$/);
  });
});

describe("the example service's work and its metrics", () => {
  it("counts its answers by route and status; web-errors-later fails half its /work once 4 s have passed, its /health green", async () => {
    const host = await runInThrowawayHost(
      `
act v1 "$web_v1" switch
work() { i=0; while [ "$i" -lt "$2" ]; do curl -s --max-time 5 -o /dev/null -w '%{http_code} ' "http://127.0.0.1:80/work"; i=$((i + 1)); done; }
put v1.work "$(work v1 4)"
get v1.missing /missing
get v1.metrics /metrics
act later "$web_errors_later" switch
put later.early "$(work later 4)"
sleep 4.5
put later.late "$(work later 4)"
get later.health /health
get later.metrics /metrics
act ten "$web_errors_10" switch
put ten.work "$(work ten 20)"
`,
      systemEnv(),
    );
    const t = host.transcript;
    const v = (key: string) => host.get(key);
    expect(v("v1.work").trim(), t).toBe("200 200 200 200");
    expect(v("v1.metrics.body").split("|"), t).toEqual([
      "# HELP example_web_requests_total Requests answered since the service started, by route and status.",
      "# TYPE example_web_requests_total counter",
      // The switch waits until /version names the new system.
      'example_web_requests_total{route="/version",code="200"} 1',
      'example_web_requests_total{route="/work",code="200"} 4',
      'example_web_requests_total{route="/work",code="500"} 0',
      'example_web_requests_total{route="other",code="404"} 1',
    ]);
    expect(v("later.early").trim(), `no errors before 4 s\n${t}`).toBe("200 200 200 200");
    expect(v("later.late").trim(), `every second /work fails after 4 s\n${t}`).toBe(
      "200 500 200 500",
    );
    expect(v("later.health.status"), `its /health stays green\n${t}`).toBe("200");
    expect(v("later.metrics.body").split("|"), t).toEqual(
      expect.arrayContaining([
        'example_web_requests_total{route="/health",code="200"} 1',
        'example_web_requests_total{route="/work",code="200"} 6',
        'example_web_requests_total{route="/work",code="500"} 2',
      ]),
    );
    const ten = v("ten.work").trim().split(" ");
    expect(
      ten.filter((s) => s === "500"),
      `10% of web-errors-10's /work\n${t}`,
    ).toHaveLength(2);
  });
});
