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
    // Named as a credential anywhere in the name, or run into one word (X1's list).
    ["https://h/x?secret_key=1", 'the query parameter "secret_key"'],
    ["https://h/x?private_key=1", 'the query parameter "private_key"'],
    ["https://h/x?aws_secret_access_key=1", 'the query parameter "aws_secret_access_key"'],
    ["https://h/x?accessKey=1", 'the query parameter "accessKey"'],
    ["https://h/x?X-Goog-Signature=1", 'the query parameter "X-Goog-Signature"'],
    ["https://h/x?jwt=1", 'the query parameter "jwt"'],
    ["https://h/x?clientsecret=1", 'the query parameter "clientsecret"'],
    // In a URL a value holds, and in the fragment.
    [
      "s3://b?region=x&endpoint=http://h/?X-Amz-Signature=1",
      'the query parameter "X-Amz-Signature"',
    ],
    ["https://h/x#access_token=1", 'the query parameter "access_token"'],
    ["https://h/x?session=1", 'the query parameter "session"'],
    ["https://h/x?a=1&token", 'the query parameter "token"'],
    ["https://h/x?sid=1", 'the query parameter "sid"'],
    ["https://h/x?pw=1", 'the query parameter "pw"'],
    ["https://h/x?api-key=1", 'the query parameter "api-key"'],
    ["https://h/x?X-Amz-Credential=1", 'the query parameter "X-Amz-Credential"'],
    // Names that only hold such letters, or name a setting, are none (the X3 audit's list).
    ["https://h/x?monkey=1&bypass=2&oauth_flow=code&keyword=a&page=2", undefined],
    ["http://h/health?skip_auth=1&authSource=admin&sortKey=name&apiKeyId=team-a", undefined],
    ["http://h/x?signature_version=2&with_credentials=false&otp=false&keyId=k1", undefined],
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
    ["s3://b?region=x&endpoint=http://h/?X-Amz-Signature=1", "s3://b"],
    ["s3://b?aws_secret_access_key=1&region=x", "s3://b"],
    ["https://h/x#access_token=1", "https://h/x"],
    ["https://h/x#top", "https://h/x#top"],
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
