#!/usr/bin/env node
// The `nixship` executable: runs the CLI on this process's arguments and streams.
import "./threadpool.js";
import { main } from "./main.js";

main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
}).then((code) => {
  process.exitCode = code;
});
