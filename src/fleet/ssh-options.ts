// The ssh_config keywords nixship gives ssh on its command line (delivery/ssh-transport.ts'
// sshArgs, and `-l` for the user), where they win over any ssh_config line: a setting of one of
// them elsewhere (a converted fleet's sshOptions) does nothing. Pure.

export const SSH_OPTIONS_SET_BY_NIXSHIP: readonly string[] = [
  "UserKnownHostsFile",
  "StrictHostKeyChecking",
  "BatchMode",
  "ConnectTimeout",
  "ServerAliveInterval",
  "ServerAliveCountMax",
  "ControlMaster",
  "ControlPath",
  "ControlPersist",
  "KexAlgorithms",
  "User",
];
