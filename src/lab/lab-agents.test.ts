import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { HOST_VIEW, isAgentProcess } from "./lab-agents.js";

describe("isAgentProcess", () => {
  it("calls an agent an agent while nsenter execs it (its command line is empty for a moment)", async () => {
    // As `lab agents start` starts one: nsenter, which execs node with the agent's arguments.
    // Between exec's switch of memory and its new arguments /proc/PID/cmdline reads empty; a
    // check that judged by that saw a starting agent as exited (CI of stop 52).
    const judged: boolean[] = [];
    for (let i = 0; i < 10; i++) {
      const child = spawn(
        "nsenter",
        [
          "-t",
          String(process.pid),
          "-m",
          "-n",
          "--",
          process.execPath,
          "-e",
          "setTimeout(() => {}, 1500)",
          "agent",
          `${HOST_VIEW}/agent/config.json`,
        ],
        { stdio: "ignore" },
      );
      const exited = new Promise((resolve) => child.on("exit", resolve));
      const until = Date.now() + 300;
      while (Date.now() < until) judged.push(await isAgentProcess(child.pid as number));
      child.kill("SIGKILL");
      await exited;
      expect(await isAgentProcess(child.pid as number)).toBe(false);
    }
    expect(judged.length).toBeGreaterThan(10);
    expect(judged.filter((j) => !j)).toEqual([]);
  });
});
