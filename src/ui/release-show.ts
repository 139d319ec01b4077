// `nixship release show`'s text: the release's fields, then per host what it names, what the
// host runs and what last passed there.

import type { OriginCheck } from "../release/release-origin.js";
import type { ReleaseShowView } from "../views/release-view.js";
import { originText } from "./origin-text.js";
import { formatTable, plural } from "./plan-format.js";

/** `trustedFrom`: where the trusted keys came from, when verified. */
export function formatReleaseShow(
  shown: ReleaseShowView,
  trustedFrom = "the trusted keys",
): string {
  const { release, current, digest, expired, hosts: views } = shown;
  const { key: signedBy, verified } = shown.signature;
  const names = Object.keys(release.hosts);
  const signatureLine =
    signedBy === null
      ? "none"
      : verified
        ? `key '${signedBy}', verified against ${trustedFrom}`
        : `key '${signedBy}', NOT verified (pass --trusted-key, or a fleet file with releases.publicKeys, to check it)`;
  const checks = [
    plural(release.health.http.length, "HTTP check"),
    plural(release.health.commands.length, "command check"),
  ].join(", ");
  const lines = [
    `release ${release.seq} of channel ${release.channel}${current ? " (current)" : ""}`,
    ...formatTable([
      ["  created", release.created],
      ["  expires", `${release.expires}${expired ? " (EXPIRED)" : ""}`],
      ["  kind", release.kind],
      ["  action", release.action],
      ["  health", checks],
      ["  confirm", `${release.confirmTimeout} s`],
      ["  digest", digest],
      ["  previous", release.previous ?? "none (first release of the channel)"],
      ["  signature", signatureLine],
      ["  published", publishedLine(shown.origin)],
    ]),
    `hosts (${names.length}):`,
    ...formatTable([
      ["  HOST", "DESIRED", "RUNNING", "LAST CONFIRMED"],
      ...views.map((v) => [
        `  ${v.host}`,
        v.desired,
        v.running === null ? "unknown" : v.running === v.desired ? "same" : v.running,
        v.lastConfirmed === null
          ? "none"
          : v.lastConfirmed === v.desired
            ? "same"
            : v.lastConfirmed,
      ]),
    ]),
  ];
  return `${lines.join("\n")}\n`;
}

/** Who published the release and from what: only what a trusted key signed is shown as true. */
function publishedLine(origin: OriginCheck): string {
  switch (origin.status) {
    case "none":
      return "by whom not recorded (published before nixship recorded it)";
    case "untrusted":
      return `by whom NOT KNOWN: its origin document is not to be believed (${origin.problem})`;
    case "trusted":
      return `${originText(origin)} (signed by key '${origin.keyName}')`;
  }
}
