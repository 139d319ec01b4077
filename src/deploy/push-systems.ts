// A deploy's push of what it built into the fleet's cache: from the build host where its
// nixship pushes the closures left there (build-host-push.ts), and from the deployer's store
// for the rest (systems given as store paths, the age package); one push-start and one
// push-done event either way, naming the build host when the NARs came from there.

import type { NixOptions } from "../cache/local-nix.js";
import { pushClosure } from "../cache/push.js";
import { heldUntrusted, resignPresent } from "../cache/resign.js";
import type { SshTarget } from "../delivery/ssh-transport.js";
import type { PathInfo } from "../nix/closure.js";
import type { PublicKey, SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import type { BuildResult } from "./build.js";
import { type BuildHostPusher, pushFromBuildHost } from "./build-host-push.js";
import type { DeployEvent } from "./events.js";

/** What the push read: the closures it pushed from this machine's store, by path. */
export interface PushedSystems {
  readonly closure: ReadonlyMap<StorePath, PathInfo>;
}

export interface PushSystemsInput {
  /** The fleet's cache: its URL as the fleet names it (the build host opens the same), open. */
  readonly cacheUrl: string;
  readonly store: ObjectStore;
  /** The closures to push: the systems, and what else the hosts realise from the cache. */
  readonly roots: readonly StorePath[];
  readonly key: SecretKey;
  /** The keys the hosts trust (the fleet's cache.publicKeys). */
  readonly trustedKeys: readonly PublicKey[];
  readonly built: Pick<BuildResult, "host" | "leftOnHost">;
  /** Whether the build host pushes (undefined: there is none, or the deploy does not push). */
  readonly pusher: BuildHostPusher | undefined;
  readonly hostSsh: SshTarget | undefined;
  readonly emit: (event: DeployEvent) => void;
  readonly nix?: NixOptions;
  readonly signal?: AbortSignal;
  /**
   * Told the closure this machine's push read, as soon as it has read it (before any upload):
   * what the survey needs of the desired systems, so that it can ask the hosts meanwhile.
   */
  readonly onClosureRead?: (closure: ReadonlyMap<StorePath, PathInfo>) => void;
}

export async function pushSystems(input: PushSystemsInput): Promise<PushedSystems> {
  const { store, built, emit } = input;
  const onHost = built.leftOnHost;
  const nixship = input.pusher?.kind === "nixship" ? input.pusher : undefined;
  const fromHost =
    onHost !== undefined && nixship !== undefined && input.hostSsh !== undefined
      ? { onHost, nixship, target: input.hostSsh }
      : undefined;
  emit({
    type: "push-start",
    cache: input.cacheUrl,
    ...(fromHost === undefined ? {} : { from: fromHost.target.name }),
  });
  const started = performance.now();
  const remote =
    fromHost === undefined
      ? undefined
      : await pushFromBuildHost({
          target: fromHost.target,
          nixship: fromHost.nixship.command,
          hostStore: fromHost.onHost.nix.store ?? "",
          sshOpts: fromHost.onHost.nix.sshOpts,
          cacheUrl: input.cacheUrl,
          store,
          key: input.key,
          roots: input.roots.filter((p) => fromHost.onHost.paths.has(p)),
          made: fromHost.onHost.made,
          ...(input.signal ? { signal: input.signal } : {}),
        });
  const here = input.roots.filter((p) => remote === undefined || !onHost?.paths.has(p));
  const closure = new Map<StorePath, PathInfo>();
  // A system the cache holds signed only by keys the hosts no longer trust (pushed before the
  // fleet's keys were rotated) would be refused at the canary: the push then signs what the
  // cache holds of the closures with the deploy's key, as push --resign does (only narinfos
  // that describe what this machine's store holds).
  const resign = here.length > 0 && (await heldUntrusted(store, here, input.trustedKeys));
  const local =
    here.length === 0
      ? { pushed: 0, alreadyPresent: 0, fileBytes: 0, resigned: 0 }
      : await pushClosure({
          store,
          roots: here,
          key: input.key,
          resign,
          compression: "zstd",
          onClosure: (infos) => {
            for (const info of infos) closure.set(info.path, info);
            input.onClosureRead?.(closure);
          },
          ...(input.nix ? { nix: input.nix } : {}),
          // An interrupt starts no new path: those under way finish and are published.
          ...(input.signal ? { signal: input.signal } : {}),
        });
  // The same for a system the build host pushed (`resign` looked at this machine's alone): what
  // the cache holds of its closure is signed again where it matches what the build host's Nix
  // says of each path (a narinfo that differs is refused, named, never signed).
  const remoteRoots = input.roots.filter((p) => !here.includes(p));
  const resignedRemote =
    remote !== undefined &&
    remoteRoots.length > 0 &&
    (await heldUntrusted(store, remoteRoots, input.trustedKeys))
      ? (await resignPresent(store, remote.closure, input.key)).resigned.length
      : 0;
  const resigned = local.resigned + resignedRemote;
  emit({
    type: "push-done",
    seconds: (performance.now() - started) / 1000,
    pushed: local.pushed + (remote?.committed.length ?? 0),
    alreadyPresent: local.alreadyPresent + (remote?.alreadyPresent ?? 0),
    fileBytes: local.fileBytes + (remote?.fileBytes ?? 0),
    ...(resigned > 0 ? { resigned } : {}),
    ...(fromHost === undefined ? {} : { from: fromHost.target.name }),
  });
  return { closure };
}
