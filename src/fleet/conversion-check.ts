// The fleet `init` would write (from the flake's configurations' nixship.deployment, or
// converted by --from), checked by the fleet's own loader before anything is written: what it
// would refuse (a tag given twice or in capitals, a policy's parallel of 0, an ssm host with no
// instance, a key's mode or path the fleet cannot hold) is named, and init writes nothing. The
// placeholders init leaves for a person to fill in (an address, an admin) are not problems.

import { FleetFileError, parseFleetValue } from "./fleet-file.js";
import type { JsonObject } from "./fleet-json.js";
import { type Conversion, type ConversionSettings, conversionJson } from "./foreign-fleet.js";
import type { Problem } from "./json-check.js";

/** What the fleet loader would refuse in `fleet`, the placeholders aside. */
export function fleetProblems(fleet: JsonObject): Problem[] {
  try {
    parseFleetValue(fleet, "the fleet init would write");
    return [];
  } catch (err) {
    if (!(err instanceof FleetFileError)) throw err;
    return err.problems.filter((p) => !p.message.startsWith("is the placeholder "));
  }
}

export function conversionProblems(
  conversion: Conversion,
  settings: ConversionSettings,
): Problem[] {
  return fleetProblems(conversionJson(conversion, settings));
}
