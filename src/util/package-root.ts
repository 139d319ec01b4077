// nixship's package root: dist/, examples/, packaging/ and node_modules/ are there (a compiled
// module, and the bundle's, lies two levels below it, as every source module does).
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
