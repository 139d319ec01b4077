// The fields of a fleet that name files relative to the fleet file: one list, for reading a
// fleet (each resolved against the file's directory) and for writing one elsewhere (each
// renamed from the new directory). A new field that names a file belongs here.
import type { Fleet } from "./fleet.js";

/** `fleet` with every file it names passed through `map`: ssh's, secrets', builders', Prometheus'. */
export function mapFleetFiles(fleet: Fleet, map: (file: string) => string): Fleet {
  const maybe = (file: string | undefined) => (file === undefined ? file : map(file));
  const ssh = {
    ...fleet.ssh,
    configFile: maybe(fleet.ssh.configFile),
    knownHosts: maybe(fleet.ssh.knownHosts),
  };
  const secrets = fleet.secrets && {
    ...fleet.secrets,
    entries: fleet.secrets.entries.map((e) => ({ ...e, file: map(e.file) })),
  };
  const builders = fleet.build.builders;
  const build =
    builders?.kind === "file"
      ? { ...fleet.build, builders: { ...builders, path: map(builders.path) } }
      : fleet.build;
  const prometheus = fleet.prometheus && {
    ...fleet.prometheus,
    bearerTokenFile: maybe(fleet.prometheus.bearerTokenFile),
  };
  return { ...fleet, ssh, secrets, build, ...(prometheus === undefined ? {} : { prometheus }) };
}
