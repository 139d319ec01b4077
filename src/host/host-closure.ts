// A system's closure as a host's store has it (activate.sh `closure`): what a plan's diff needs
// when neither the deployer nor the fleet's cache has the system the host runs. The host sends
// base64 of one line per path, "PATH NARSIZE I J ...", I and J the lines (from 1) of the path's
// references; this reads it back, strictly (a host may lie or be broken).
import type { PathInfo } from "../nix/closure.js";
import { isStorePath, type StorePath } from "../nix/store-path.js";
import { answerOf } from "./activation.js";
import { resultMessage } from "./script-outcomes.js";
import type { ScriptRun } from "./session-request.js";

export type ClosureNode = Pick<PathInfo, "path" | "narSize" | "references">;

export type HostClosure =
  | { readonly kind: "read"; readonly nodes: readonly ClosureNode[] }
  | { readonly kind: "failed"; readonly reason: string };

/** The closure a host answered `closure --path root` with, or why there is none. */
export function hostClosure(run: ScriptRun, root: string): HostClosure {
  const r = run.result;
  if (r === undefined) return { kind: "failed", reason: run.failure };
  const answer = answerOf(r, "closure");
  if (answer === undefined || !answer.ok) return { kind: "failed", reason: resultMessage(r) };
  if (answer.path !== root) {
    return { kind: "failed", reason: `the host answered for ${answer.path}, not ${root}` };
  }
  return readClosureLines(Buffer.from(answer.closure, "base64").toString("utf8"), root);
}

/** The lines decoded, checked: store paths, sizes, references to lines that exist, the root among them. */
export function readClosureLines(text: string, root: string): HostClosure {
  const lines = text.split("\n").filter((l) => l !== "");
  const rows = lines.map((l) => l.split(" "));
  const paths: StorePath[] = [];
  for (const [i, row] of rows.entries()) {
    const path = row[0] ?? "";
    if (!isStorePath(path)) return bad(`line ${i + 1} does not start with a store path`);
    paths.push(path);
  }
  const nodes: ClosureNode[] = [];
  for (const [i, row] of rows.entries()) {
    const narSize = Number(row[1]);
    if (!/^[0-9]+$/.test(row[1] ?? "") || !Number.isSafeInteger(narSize)) {
      return bad(`line ${i + 1} has no NAR size`);
    }
    const references: StorePath[] = [];
    for (const ref of row.slice(2)) {
      const target = /^[1-9][0-9]*$/.test(ref) ? paths[Number(ref) - 1] : undefined;
      if (target === undefined)
        return bad(`line ${i + 1} refers to line ${ref.slice(0, 12)}, which is not there`);
      references.push(target);
    }
    nodes.push({ path: paths[i] as StorePath, narSize, references });
  }
  if (!paths.includes(root as StorePath)) return bad(`the closure does not hold ${root} itself`);
  return { kind: "read", nodes };
}

function bad(why: string): HostClosure {
  return { kind: "failed", reason: `the host's closure is malformed: ${why}` };
}
