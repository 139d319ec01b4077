#!/bin/sh
# init of the nixship example system @name@ (a stand-in for a NixOS toplevel's stage-2 init),
# run once per boot by the lab's boot loader (src/lab/lab-reboot.ts), in the host's fresh mount
# namespace, before its sshd. Like NixOS's, it points /run/booted-system and
# /run/current-system at this system and starts its services: here example-web, through
# switch-to-configuration, in the background (a service that fails does not stop the boot).
# A system built with boots=false panics instead, as a kernel that cannot mount its root does:
# it exits 1 and the host does not come up.
set -u
PATH=/usr/bin:/bin
export PATH
out=@out@
if [ "@boots@" != true ]; then
  echo "example kernel @kernel@: Kernel panic - not syncing: VFS: Unable to mount root fs" >&2
  exit 1
fi
mkdir -p /run
ln -sfn "$out" /run/booted-system
ln -sfn "$out" /run/current-system
setsid "$out/bin/switch-to-configuration" switch </dev/null >>/run/nixship-boot.log 2>&1 &
exit 0
