// What the fleet file's parser says of a document, as lines without the file's name: the unit
// tests of the fleet file's sections share it.
import { FleetFileError, parseFleetValue } from "../../src/fleet/fleet-file.js";

/** Each problem the parser reports for `doc`, or none. */
export function problemsOf(doc: unknown): string[] {
  try {
    parseFleetValue(doc, "nixship.json");
  } catch (err) {
    if (err instanceof FleetFileError) {
      return err.message.split("\n").map((line) => line.replace(/^nixship\.json: /, ""));
    }
    throw err;
  }
  return [];
}
