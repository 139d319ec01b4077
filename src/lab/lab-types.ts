// What the lab's files share and import from none of them: the events a lab tells as it comes
// up, the keys its fleet file names, and the channel its agents follow.

/** What `lab up` tells as it brings hosts up. */
export type LabEvent =
  | { readonly type: "host-starting"; readonly host: string; readonly address: string }
  | { readonly type: "host-up"; readonly host: string; readonly pid: number }
  | { readonly type: "agent-up"; readonly host: string; readonly pid: number };

/** The keys a lab's fleet file names. */
export interface LabKeys {
  readonly cache: string;
  /** With agents: the key the lab's releases are signed with. */
  readonly release?: string;
}

/** The channel a lab's agents follow. */
export const LAB_CHANNEL = "lab";
