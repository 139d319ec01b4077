#!/bin/sh
# systemd-bless-boot of the nixship example system @name@, a stand-in that honours the real
# one's contract: the booted entry is the file that LoaderBootCountPath names (relative to the
# ESP at /boot; the lab's boot loader keeps that EFI variable in
# /run/nixship-lab/efivars/LoaderBootCountPath). Its name carries "+LEFT-DONE" counters while
# the boot is being assessed.
#   status   prints good, bad, indeterminate or clean (no counted boot)
#   good     drops the counters: the entry is good
#   bad      sets tries left to 0: the boot loader will not pick it again
set -u
PATH=/usr/bin:/bin
var=/run/nixship-lab/efivars/LoaderBootCountPath
esp=/boot
if [ ! -s "$var" ]; then
  case ${1-} in
    status) echo clean; exit 0 ;;
    good | bad) echo "systemd-bless-boot: this boot was not counted (no LoaderBootCountPath)" >&2; exit 1 ;;
  esac
fi
booted=$(cat "$var")
dir=$esp$(dirname "$booted")
name=$(basename "$booted" .conf)
base=${name%%+*}
counters=${name#"$base"}
# The entry as it is now: counted (the name booted), or already renamed by good or bad.
current=""
for f in "$dir/$base.conf" "$dir/$base"+*.conf; do
  [ -e "$f" ] && current=$f && break
done
case ${1-} in
  status)
    if [ -z "$current" ]; then echo indeterminate
    elif [ "$current" = "$dir/$base.conf" ]; then echo good
    else
      case $(basename "$current" .conf) in
        "$base"+0 | "$base"+0-*) echo bad ;;
        *) echo indeterminate ;;
      esac
    fi
    ;;
  good)
    [ -n "$current" ] || { echo "systemd-bless-boot: $booted is gone" >&2; exit 1; }
    [ "$current" = "$dir/$base.conf" ] || mv -f "$current" "$dir/$base.conf"
    ;;
  bad)
    [ -n "$current" ] || { echo "systemd-bless-boot: $booted is gone" >&2; exit 1; }
    done=${counters#*-}
    [ "$done" != "$counters" ] || done=0
    [ "$current" = "$dir/$base+0-$done.conf" ] || mv -f "$current" "$dir/$base+0-$done.conf"
    ;;
  *)
    echo "usage: systemd-bless-boot status|good|bad" >&2
    exit 2
    ;;
esac
