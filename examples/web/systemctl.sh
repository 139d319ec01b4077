#!/bin/sh
# systemctl of the nixship example system @name@: a stand-in that knows one verb, `reboot`,
# which presses the lab host's power button (/run/nixship-lab/power). As systemd's, it returns
# at once and the host goes down shortly after.
set -u
case ${1-} in
  reboot)
    if [ ! -x /run/nixship-lab/power ]; then
      echo "systemctl (example system @name@): this host has no power button: not a lab host" >&2
      exit 1
    fi
    exec /run/nixship-lab/power reboot
    ;;
  *)
    echo "systemctl (example system @name@): only 'reboot' is supported" >&2
    exit 1
    ;;
esac
