// The moto server the S3 tests run against: when it cannot be had, the tests that need it fail
// saying what was tried and how to install it; once closed, its process and its port are gone.
// With `iam`, moto enforces IAM from the first request after the admin user is made.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { readAll } from "../src/store/helpers.js";
import { openStore } from "../src/store/url.js";
import { startMotoServer } from "../support/moto-server.js";
import { createMotoUser, s3ClientWith } from "./support/moto-iam.js";

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("moto's server for the tests", () => {
  it("fails with the fix when the Python named lacks moto, or is not there", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-moto-absent-"));
    try {
      // A python3 that sees no installed packages, as one without moto would.
      const bare = join(dir, "python3");
      await writeFile(bare, '#!/bin/sh\nexec python3 -S "$@"\n');
      await chmod(bare, 0o755);
      vi.stubEnv("NIXSHIP_MOTO_PYTHON", bare);
      const absent = await startMotoServer().catch((err: unknown) => err);
      expect(absent).toBeInstanceOf(Error);
      expect((absent as Error).message).toMatch(
        new RegExp(`^moto's server could not be started \\(${bare}: no module named '\\w+'\\)`),
      );
      expect((absent as Error).message).toContain("run 'bash scripts/setup.sh'");
      vi.stubEnv("NIXSHIP_MOTO_PYTHON", join(dir, "no-such-python"));
      await expect(startMotoServer()).rejects.toThrow(/no-such-python: spawn .* ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("serves its bucket on 127.0.0.1, and once closed its process is gone and the port refuses", async () => {
    const server = await startMotoServer("nixship-moto-check");
    expect(server.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const store = await openStore(server.url);
    try {
      await store.put("k", Buffer.from("v"));
      expect((await readAll(store, "k"))?.toString()).toBe("v");
    } finally {
      await store.close();
      await server.close();
    }
    expect(() => process.kill(server.pid, 0)).toThrow(/ESRCH/);
    await expect(fetch(server.endpoint)).rejects.toThrow();
  });

  it("with iam, refuses keys it does not hold and keys whose policy says no; the admin's do anything", async () => {
    const server = await startMotoServer("nixship-moto-iam", { iam: true });
    const { admin } = server;
    if (admin === undefined) throw new Error("no admin keys");
    const nobody = await createMotoUser(
      { endpoint: server.endpoint, service: "iam", keys: admin },
      { name: "nobody", policies: {} },
    );
    const answer = async (keys: typeof admin, command: unknown) => {
      const s3 = s3ClientWith(server.endpoint, keys);
      try {
        await s3.send(command as ListObjectsV2Command);
        return "allowed";
      } catch (err) {
        return (err as { name?: string }).name;
      } finally {
        s3.destroy();
      }
    };
    // A prefix with "/" is signed with it encoded, as S3 wants (moto alone would not accept it).
    const list = new ListObjectsV2Command({ Bucket: server.bucket, Prefix: "status/hosts/" });
    const put = new PutObjectCommand({ Bucket: server.bucket, Key: "a/b", Body: "x" });
    try {
      expect(await answer(admin, list)).toBe("allowed");
      expect(await answer(admin, put)).toBe("allowed");
      expect(await answer(nobody, list)).toBe("AccessDenied");
      expect(await answer(nobody, put)).toBe("AccessDenied");
      const unknown = { accessKeyId: "AKIAUNKNOWNKEY000000", secretAccessKey: "x" };
      expect(await answer(unknown, list)).toBe("InvalidAccessKeyId");
      expect(await answer({ ...admin, secretAccessKey: "wrong" }, list)).toBe(
        "SignatureDoesNotMatch",
      );
    } finally {
      await server.close();
    }
    const open = await startMotoServer("nixship-moto-open");
    await open.close();
    expect(open.admin).toBeUndefined();
  });
});
