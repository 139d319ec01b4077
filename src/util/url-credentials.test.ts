// What counts as a credential in a URL, and how a URL is quoted without one.
import { describe, expect, it } from "vitest";
import { credentialsIn, shownUrl } from "./url-credentials.js";

describe("credentialsIn", () => {
  it.each([
    ["https://cache.example/x", undefined],
    ["http://10.0.0.1:8080/health?full=1", undefined],
    ["s3://bucket?region=eu-west-1&endpoint=http://h:9000", undefined],
    ["https://bot:tok@cache.example", "a user or password before the host"],
    ["https://bot@cache.example", "a user or password before the host"],
    ["https://bot:a/b@cache.example", "a user or password before the host"],
    ["https://h/x?api_key=1", 'the query parameter "api_key"'],
    ["https://h/x?X-Amz-Security-Token=1", 'the query parameter "X-Amz-Security-Token"'],
    ["https://h/x?Token=1", 'the query parameter "Token"'],
  ])("%s: %s", (url, expected) => {
    expect(credentialsIn(url)).toBe(expected);
  });
});

describe("shownUrl", () => {
  it("quotes a URL that cannot hold a credential as it is", () => {
    expect(shownUrl("s3://bucket?regoin=x")).toBe("s3://bucket?regoin=x");
  });

  it.each([
    ["s3://AKIA:a/b/c@bucket/p", "s3://bucket/p"],
    ["s3://bucket?endpoint=http%3A%2F%2FAKIA%3Asecret%40minio", "s3://bucket"],
    ["https://h/x?token=secret&full=1", "https://h/x"],
    ["https://h/%E0%A4%A", "https://h/%E0%A4%A"],
    ["http://bot:tok@{address}/health", "http://…"],
  ])("quotes only what identifies %s", (text, shown) => {
    expect(shownUrl(text)).toBe(shown);
  });
});

describe("shownUrl keeps what names the source", () => {
  it.each([
    ["s3://AKIA:topsecret@bucket/fleet?region=eu-west-1", "s3://bucket/fleet?region=eu-west-1"],
    ["s3://AKIA:pa?ss@bucket", "s3://…"],
    ["s3://bucket?secret=s3cr3t&region=x", "s3://bucket"],
    ["http://{address}/health?full=1&access_token=s3cr3t", "http://{address}/health"],
  ])("%s as %s", (text, shown) => {
    expect(shownUrl(text)).toBe(shown);
  });
});
