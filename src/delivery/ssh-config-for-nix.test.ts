import { describe, expect, it } from "vitest";
import { sshConfigText, sshConfigValue } from "./ssh-config-for-nix.js";

describe("sshConfigText", () => {
  it("quotes every value, so a path with spaces stays one value and no word becomes an option", () => {
    const text = sshConfigText([
      "-F",
      "/fleet dir/ssh_config",
      "-o",
      'UserKnownHostsFile="/a -oProxyCommand=/tmp/evil.sh /known_hosts"',
      "-o",
      "StrictHostKeyChecking=yes",
      "-l",
      "deploy",
    ]);
    expect(text.split("\n")).toEqual([
      "# nixship: the ssh options of one nix copy (written per run, private)",
      'UserKnownHostsFile "/a -oProxyCommand=/tmp/evil.sh /known_hosts"',
      "StrictHostKeyChecking yes",
      'User "deploy"',
      'Include "/fleet dir/ssh_config"',
      "",
    ]);
  });

  it("includes the files ssh reads by default when no -F is given", () => {
    expect(sshConfigText(["-o", "BatchMode=yes"])).toContain(
      "Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n",
    );
  });

  it("refuses a value ssh_config cannot quote", () => {
    expect(() => sshConfigValue('/a"b')).toThrow(/holds a double quote or a line break/);
    expect(() => sshConfigText(["-l", "a\nProxyCommand x"])).toThrow(/line break/);
  });
});
