// The fleet `init --from` converted, checked by the fleet's own loader before anything is
// written: what it would refuse (a tag given twice, a key's mode or path the fleet cannot hold)
// is named, and init writes nothing. The placeholders init leaves for a person to fill in (an
// address, an admin) are not problems of the conversion.

import { FleetFileError, parseFleetValue } from "./fleet-file.js";
import { type Conversion, type ConversionSettings, conversionJson } from "./foreign-fleet.js";
import type { Problem } from "./json-check.js";

export function conversionProblems(
  conversion: Conversion,
  settings: ConversionSettings,
): Problem[] {
  try {
    parseFleetValue(conversionJson(conversion, settings), "the converted fleet");
    return [];
  } catch (err) {
    if (!(err instanceof FleetFileError)) throw err;
    return err.problems.filter((p) => !p.message.startsWith("is the placeholder "));
  }
}
