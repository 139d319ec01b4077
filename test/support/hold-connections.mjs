// A child process that opens COUNT TCP connections to 127.0.0.1:PORT and holds them open without
// sending a byte (source addresses 127.0.0.FIRST … FIRST+SPREAD-1 in turn, AT_ONCE connecting at
// a time), then prints what happened as one JSON line, again for each line "report" on its
// stdin, and holds what is left until its stdin closes (or 180 s pass). Used by dashboard-edges.test.ts: a process's own file descriptors
// (ulimit -n) bound how many connections it can hold, so a flood larger than that is split over
// several of these.
import net from "node:net";

const [port, count, first, spread, atOnce] = process.argv.slice(2).map(Number);
let next = 0;
let opened = 0;
let errors = 0;
let closedByServer = 0;
const held = new Set();
const firstError = [];

function connectOne() {
  return new Promise((resolve) => {
    const i = next++;
    const socket = net.connect({
      port,
      host: "127.0.0.1",
      localAddress: `127.0.0.${first + (i % spread)}`,
    });
    socket.once("connect", () => {
      opened++;
      held.add(socket);
      resolve();
    });
    socket.on("error", (err) => {
      if (!held.has(socket)) {
        errors++;
        if (firstError.length === 0) firstError.push(err.code ?? err.message);
        resolve();
      }
    });
    socket.once("close", () => {
      if (held.delete(socket)) closedByServer++;
    });
  });
}

async function worker() {
  while (next < count) await connectOne();
}

const deadline = setTimeout(() => process.exit(3), 180_000);
await Promise.all(Array.from({ length: atOnce }, worker));
const report = () =>
  process.stdout.write(
    `${JSON.stringify({ opened, errors, closedByServer, held: held.size, firstError: firstError[0] ?? null })}\n`,
  );
report();
process.stdin.setEncoding("utf8");
process.stdin.on("data", (text) => {
  for (const line of text.split("\n")) if (line === "report") report();
});
process.stdin.on("end", () => {
  clearTimeout(deadline);
  for (const s of held) s.destroy();
  process.exit(0);
});
