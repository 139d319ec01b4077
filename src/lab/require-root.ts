// The lab's operations need root: network namespaces, links and mounts.
import { OperationError } from "../errors.js";

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new OperationError(
      "lab-needs-root",
      `${what} needs root (network and mount namespaces)`,
      {
        hint: "run it as root, e.g. with sudo",
      },
    );
  }
}
