#!/usr/bin/env node
// Writes dist/ssm-document.json, the SSM Command document with the built activate.sh embedded,
// exactly what `nixship ssm document` prints: a step of `npm run build`, after the compile and
// the script's assembly, for the Terraform module terraform/modules/ssm-document (its `document`).
//
//   node scripts/write-ssm-document.mjs [--out FILE]
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

async function main(args) {
  let out = join(ROOT, "dist/ssm-document.json");
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--out" && i + 1 < args.length) out = resolve(args[++i]);
    else {
      process.stderr.write(
        `write-ssm-document: unknown argument '${args[i]}' (known: --out FILE)\n`,
      );
      return 2;
    }
  }
  // The compiled module the CLI prints it with: one way to make the document.
  const { formatSsmDocument, ssmDocument } = await import(
    join(ROOT, "dist/delivery/ssm-document.js")
  );
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, formatSsmDocument(ssmDocument()));
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
