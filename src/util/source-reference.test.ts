import { describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import {
  checkReleaseOrigin,
  formatReleaseOrigin,
  readOriginSources,
} from "../release/release-origin.js";
import { parseRolloutRecord } from "../status/rollout.js";
import { sourceText } from "../ui/origin-text.js";
import { sourceReference, UNREADABLE_REFERENCE, withoutSourceSecrets } from "./source-reference.js";

/** Every secret the corpus hides; none may be left in what is shown. */
const SECRETS = [
  "SECRET",
  "glpat-",
  "ghp_",
  "AKIA",
  "X-Amz",
  "Signature",
  "token",
  "p@ss",
  "pass",
  "bot",
];

/** The forms of reference met in fleet files and records, each as it must be shown. */
const CORPUS: readonly (readonly [string, string])[] = [
  // git over https with a token in the userinfo, `@` and `:` in the password among them.
  ["git+https://bot:ghp_SECRET@github.com/acme/fleet", "git+https://github.com/acme/fleet"],
  ["git+https://bot:p@ss_SECRET@github.com/acme/fleet", "git+https://github.com/acme/fleet"],
  [
    "git+https://bot:p@ss:w@rd_SECRET@host.example/acme/fleet",
    "git+https://host.example/acme/fleet",
  ],
  [
    "git+https://oauth2:glpat-SECRET@gitlab.example:8443/acme/fleet.git?ref=main&rev=0123456789abcdef0123456789abcdef01234567",
    "git+https://gitlab.example:8443/acme/fleet.git?ref=main&rev=0123456789abcdef0123456789abcdef01234567",
  ],
  [
    "git+https://ghp_SECRET@github.com/acme/fleet?dir=hosts",
    "git+https://github.com/acme/fleet?dir=hosts",
  ],
  ["git+https://bot:p%40ss_SECRET@github.com/acme/fleet", "git+https://github.com/acme/fleet"],
  // An unencoded `/` or `#` in the password.
  ["git+https://bot:p/ss_SECRET@github.com/acme/fleet", "git+https://github.com/acme/fleet"],
  [
    "git+https://bot:p#ss_SECRET@github.com/acme/fleet#web",
    "git+https://github.com/acme/fleet#web",
  ],
  ["git+ssh://git@github.com/acme/fleet?ref=prod", "git+ssh://github.com/acme/fleet?ref=prod"],
  // Tokens in the query: dropped, the flake's own attributes kept, in their order.
  [
    "git+https://gitlab.example/acme/fleet?private_token=glpat-SECRET&ref=main",
    "git+https://gitlab.example/acme/fleet?ref=main",
  ],
  [
    "https://gitlab.example/api/v4/projects/7/repository/archive.tar.gz?private_token=glpat-SECRET",
    "https://gitlab.example/api/v4/projects/7/repository/archive.tar.gz",
  ],
  [
    "https://api.github.com/repos/acme/fleet/tarball/main?access_token=ghp_SECRET&narHash=sha256-AAAA",
    "https://api.github.com/repos/acme/fleet/tarball/main?narHash=sha256-AAAA",
  ],
  [
    "tarball+https://bot:SECRET@example.org/fleet.tar.gz?token=SECRET",
    "tarball+https://example.org/fleet.tar.gz",
  ],
  [
    "https://example.org/fleet.tar.gz?ACCESS_TOKEN=SECRET&Ref=SECRET&acc%65ss_token=SECRET",
    "https://example.org/fleet.tar.gz",
  ],
  ["https://example.org/fleet.tar.gz?%ZZ=SECRET&dir=a", "https://example.org/fleet.tar.gz?dir=a"],
  // An S3 presigned URL: the signature and the key id are gone.
  [
    "https://bucket.s3.eu-west-1.amazonaws.com/fleet.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=abcdefSECRET",
    "https://bucket.s3.eu-west-1.amazonaws.com/fleet.tar.gz",
  ],
  ["s3://bucket/fleet.tar.gz?profile=SECRET&endpoint=minio.local", "s3://bucket/fleet.tar.gz"],
  // github:, gitlab:, indirect, with their refs.
  ["github:acme/fleet?ref=prod", "github:acme/fleet?ref=prod"],
  [
    "github:acme/fleet/prod?host=github.example&access_token=ghp_SECRET",
    "github:acme/fleet/prod?host=github.example",
  ],
  [
    "gitlab:acme/fleet?ref=main&private_token=glpat-SECRET#nixosConfigurations.web",
    "gitlab:acme/fleet?ref=main#nixosConfigurations.web",
  ],
  ["github:bot:ghp_SECRET@acme/fleet", "github:acme/fleet"],
  ["git+https:bot:ghp_SECRET@github.com/acme/fleet", "git+https:github.com/acme/fleet"],
  ["nixpkgs/nixos-24.05", "nixpkgs/nixos-24.05"],
  ["flake:nixpkgs", "flake:nixpkgs"],
  // Local: path:, file://, plain paths, kept but for a query.
  ["path:/srv/fleet", "path:/srv/fleet"],
  [
    "path:/srv/fleet?narHash=sha256-AAAA&access_token=SECRET",
    "path:/srv/fleet?narHash=sha256-AAAA",
  ],
  ["path:/srv/a@b/fleet", "path:/srv/a@b/fleet"],
  ["file:///srv/fleet.tar.gz?token=SECRET", "file:///srv/fleet.tar.gz"],
  [
    "git+file:///srv/fleet?dir=hosts&access_token=SECRET#web",
    "git+file:///srv/fleet?dir=hosts#web",
  ],
  ["git+file://bot:p@ss_SECRET@localhost/srv/fleet", "git+file://localhost/srv/fleet"],
  ["/srv/fleet", "/srv/fleet"],
  ["./fleet#web-v1", "./fleet#web-v1"],
  ["git@github.com:acme/fleet", "github.com:acme/fleet"],
  // An IPv6 host and a port.
  ["git+http://bot:SECRET@[fd00::1]:3000/acme/fleet", "git+http://[fd00::1]:3000/acme/fleet"],
];

describe("sourceReference", () => {
  it("keeps what identifies each reference of the corpus, and no credential", () => {
    for (const [given, shown] of CORPUS) {
      const got = sourceReference(given);
      expect(got, given).toBe(shown);
      for (const secret of SECRETS) {
        if (!shown.includes(secret)) expect(got, given).not.toContain(secret);
      }
    }
  });

  it("shows what it cannot read safely as such, never its text", () => {
    for (const given of [
      "bot:SECRET@github.com/acme/fleet",
      "https://bot:pass?SECRET/x",
      "https://bot:SECRET/acme",
      "weird:bot@SECRET",
      "x".repeat(9000),
    ]) {
      expect(sourceReference(given), given).toBe(UNREADABLE_REFERENCE);
    }
  });

  it("keeps a reference one line of text, without control characters", () => {
    expect(sourceReference("/srv/fleet\n[fake] line\u001b[2J")).toBe(
      "/srv/fleet\ufffd[fake] line\ufffd[2J",
    );
  });

  it("never throws, is idempotent, and never keeps userinfo or a parameter off the allow list", () => {
    // A seeded generator: the same cases each run.
    let seed = 46;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
    const text = (alphabet: string, max: number) =>
      Array.from({ length: Math.floor(next() * (max + 1)) }, () => pick([...alphabet])).join("");
    for (let i = 0; i < 5000; i++) {
      const scheme = pick(["https", "git+https", "git+ssh", "tarball+http", "s3", "git+file"]);
      const marker = `Q${text("abcXYZ019@:/#?%&=._~+-", 24)}Z`;
      const host = text("abcdefgh0123456789.-", 16) || "h";
      const path = text("abc/._-", 20).replace(/^([^/])/, "/$1");
      const parameter = pick(["access_token", "private_token", "X-Amz-Signature", "token", "sig"]);
      const url = `${scheme}://bot:${marker}@${host}${path}?${parameter}=${marker}&ref=main`;
      const shown = sourceReference(url);
      expect(shown, url).not.toContain(marker);
      expect(shown, url).not.toContain("bot");
      expect(sourceReference(shown), url).toBe(shown);
      const noise = text("ab:/@?#&=%\\[] \n\u0000", 60);
      expect(typeof sourceReference(noise)).toBe("string");
      expect(typeof withoutSourceSecrets(noise)).toBe("string");
    }
  });
});

describe("the writers and readers of sources", () => {
  const sources = CORPUS.map(([flake]) => ({ flake, rev: null, dirty: null }));
  const expected = CORPUS.map(([, shown]) => shown);

  it("a release's origin: written, and read from what an older nixship stored", () => {
    const key = generateSecretKey("corpus-1");
    const release = { channel: "prod", seq: 1, digest: `sha256-${"A".repeat(43)}=` };
    // The corpus in two documents: an origin names at most 20 sources.
    for (const part of [sources.slice(0, 20), sources.slice(20)]) {
      const bytes = formatReleaseOrigin(release, { by: "ci", sources: part }, key);
      const check = checkReleaseOrigin(bytes, release, [publicKeyOf(key)]);
      expect(check.status === "trusted" && check.sources.map((s) => s.flake)).toEqual(
        part.map((s) => expected[sources.indexOf(s)]),
      );
    }
    const read = sources.flatMap((s) => {
      const one = readOriginSources([s]);
      return typeof one === "string" ? [one] : one.map((o) => o.flake);
    });
    expect(read).toEqual(expected);
  });

  it("a rollout record read, and the text a status note shows", () => {
    for (const [i, source] of sources.entries()) {
      const record = parseRolloutRecord(
        Buffer.from(
          JSON.stringify({
            version: 1,
            id: "0123456789ab",
            mode: "ssh",
            action: "switch",
            state: "succeeded",
            stopped: null,
            waves: [],
            by: "ci",
            sources: [source],
            startedAt: "2026-01-01T00:00:00.000Z",
            updatedAt: "2026-01-01T00:00:00.000Z",
          }),
        ),
        "rec",
      );
      expect(record.sources?.[0]?.flake).toBe(expected[i]);
      expect(sourceText(source)).toBe(expected[i]);
    }
  });
});

describe("withoutSourceSecrets", () => {
  it("reduces each reference a message quotes, and leaves the rest of it alone", () => {
    expect(
      withoutSourceSecrets(
        "error: unable to download 'https://gitlab.example/a.tar.gz?private_token=glpat-SECRET': HTTP error 401",
      ),
    ).toBe("error: unable to download 'https://gitlab.example/a.tar.gz': HTTP error 401");
    expect(
      withoutSourceSecrets(
        "evaluating git+https://bot:p@ss_SECRET@github.com/acme/fleet, path:/srv/x?access_token=SECRET failed.",
      ),
    ).toBe("evaluating git+https://github.com/acme/fleet, path:/srv/x failed.");
    const plain =
      "root@host.example.org: Permission denied (publickey). at 12:30:45, attribute 'web' missing";
    expect(withoutSourceSecrets(plain)).toBe(plain);
  });
});
