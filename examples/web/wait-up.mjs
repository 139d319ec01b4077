// Waits until the example web service that switch-to-configuration just started answers on
// port 80 as SYSTEM. Run as `node wait-up.mjs PID SYSTEM TIMEOUT_MS`. Exits 0 once
// GET /version names SYSTEM, 1 when TIMEOUT_MS passes first, 2 as soon as PID has exited.
import { readFileSync } from "node:fs";
import { get } from "node:http";

const [pid, system, timeoutText] = process.argv.slice(2);
const deadline = Date.now() + Number(timeoutText);

// A zombie has exited too: nobody may reap an orphan quickly.
function alive() {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function servedSystem() {
  return new Promise((resolve) => {
    const req = get({ host: "127.0.0.1", port: 80, path: "/version", timeout: 1000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        body += chunk;
      });
      res.on("end", () => {
        try {
          resolve(JSON.parse(body).system);
        } catch {
          resolve(undefined);
        }
      });
      res.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

for (;;) {
  if (!alive()) {
    console.error(`example-web (pid ${pid}) exited while starting`);
    process.exit(2);
  }
  if ((await servedSystem()) === system) process.exit(0);
  if (Date.now() >= deadline) {
    console.error(`example-web (pid ${pid}) did not answer on port 80 within ${timeoutText} ms`);
    process.exit(1);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}
