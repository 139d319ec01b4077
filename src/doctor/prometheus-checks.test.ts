// doctor's Prometheus checks against a small local server standing in for a Prometheus whose
// answers are at fault (the lab test, test/bake-ssh.test.ts, meets a real one): each failure's
// fix is the one for what went wrong.
import { afterEach, describe, expect, it } from "vitest";
import { type LocalServer, serveLocal } from "../../support/local-http.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { prometheusClient } from "../metrics/prometheus.js";
import { checkPrometheus } from "./prometheus-checks.js";

let server: LocalServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A stand-in that answers `vector(1)` as Prometheus does, and every other query with `result`. */
async function standIn(result: unknown[]): Promise<string> {
  server = await serveLocal((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      const query = new URLSearchParams(body).get("query");
      res.writeHead(200, { "content-type": "application/json" });
      const series = query === "vector(1)" ? [{ metric: {}, value: [1, "1"] }] : result;
      res.end(
        JSON.stringify({ status: "success", data: { resultType: "vector", result: series } }),
      );
    });
  });
  return server.url;
}

function fleetAsking(url: string) {
  return parseFleetValue(
    {
      prometheus: { url },
      hosts: { web1: { address: "192.0.2.1", system: ".#web1", tags: ["web"] } },
      policies: {
        "@web": {
          bake: { seconds: 60, interval: 10 },
          analysis: [{ name: "errors", query: 'errors{host="{name}"}', max: 0.1, noData: "fail" }],
        },
      },
    },
    "fleet.json",
  );
}

describe("checkPrometheus", () => {
  it("says to look at the query's labels and the scraping when nothing was measured", async () => {
    const url = await standIn([]);
    const fleet = fleetAsking(url);
    const checks = await checkPrometheus(fleet, fleet.hosts, prometheusClient({ url, timeout: 5 }));
    expect(checks.find((c) => c.name === "analysis errors")).toMatchObject({
      status: "fail",
      detail: expect.stringContaining("the query answered no series"),
      fix: expect.stringContaining("its labels, and that Prometheus scrapes them"),
    });
  });

  it("says the answer is at fault when it is (two series), not to look at the scraping", async () => {
    const series = { metric: {}, value: [1, "0.5"] };
    const url = await standIn([series, series]);
    const fleet = fleetAsking(url);
    const checks = await checkPrometheus(fleet, fleet.hosts, prometheusClient({ url, timeout: 5 }));
    const check = checks.find((c) => c.name === "analysis errors");
    expect(check).toMatchObject({
      status: "fail",
      detail: expect.stringContaining("answered 2 series"),
      fix: `the answer is at fault, as said: the query (errors{host="{name}"}) must answer one value per host, from Prometheus' own API at prometheus.url (${url})`,
    });
  });

  it("warns of a value that fails the condition now: a bake would count it failed", async () => {
    const url = await standIn([{ metric: {}, value: [1, "+Inf"] }]);
    const fleet = fleetAsking(url);
    const checks = await checkPrometheus(fleet, fleet.hosts, prometheusClient({ url, timeout: 5 }));
    expect(checks.find((c) => c.name === "analysis errors")).toEqual({
      area: "prometheus",
      name: "analysis errors",
      status: "warn",
      detail:
        "answers a value for 1 host(s); now +Inf is above the maximum 0.1 for web1 (1 of 1 host(s))",
      fix: 'a bake that measured this now would count a failed measurement for that host (0 tolerated): look at what the query (errors{host="{name}"}) measures there, or at its condition (at most 0.1)',
    });
  });

  it("gives the token file's own fix when it cannot be read", async () => {
    const fleet = fleetAsking("http://127.0.0.1:9");
    const checks = await checkPrometheus(fleet, fleet.hosts, {
      unreadable: "prometheus.token: mode 0644",
      hint: "chmod 600 prometheus.token",
    });
    expect(checks).toEqual([
      {
        area: "prometheus",
        name: "prometheus token",
        status: "fail",
        detail: "prometheus.token: mode 0644",
        fix: "chmod 600 prometheus.token",
      },
    ]);
  });
});
