#!/bin/sh
# switch-to-configuration of the nixship example system @name@, a stand-in for a NixOS
# toplevel. It honours NixOS's contract: ACTION is switch, test, boot or dry-activate; exit 0
# on success, 1 on bad usage, 2 when activation fails, 4 when the service fails to start.
# A system built with start=hang (web-hang) never ends a switch or test: it stops the old
# service, points /run/current-system at itself, then waits forever, as a switch whose unit
# never comes up would.
# Like NixOS's own, it reports on stderr and leaves stdout to the caller. Its one service,
# example-web, is an HTTP server on port 80, a small C program (web/server.c) that also waits
# for itself to come up. Every path it writes is under /run, which each (lab) host has to itself.
set -u
PATH=/usr/bin:/bin
export PATH

out=@out@
share=@share@
name=@name@
start=@start@

unit=example-web
pidfile=/run/nixship-example-web.pid
logfile=/run/nixship-example-web.log
lockfile=/run/nixship-example-web.lock
server=$share/bin/example-web
start_timeout_ms=10000

say() { printf '%s\n' "$*" >&2; }

usage() {
  say "usage: $0 switch|test|boot|dry-activate"
  say "  switch, test    activate $name now: point /run/current-system at it, restart $unit"
  say "  boot            make no change now (the caller sets the boot profile)"
  say "  dry-activate    print what switch would stop and start, change nothing"
}

# alive PID: the process exists and has not exited (an orphan may stay a zombie for a while).
alive() {
  stat=
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || [ -n "$stat" ] || return 1
  state=${stat##*) }
  state=${state%% *}
  [ "$state" != Z ] && [ "$state" != X ]
}

# running_pid: prints the pid of the running example-web, if one runs. The command line must
# be our server's (any version's: SHARE/bin/example-web serve SYSTEM), so that a stale pid file
# can never make us signal somebody else. The second pattern is the Node.js service that the
# example systems ran before the C server: a lab host up since then may still run it.
running_pid() {
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  case $pid in '' | *[!0-9]*) return 1 ;; esac
  alive "$pid" || return 1
  case $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) in
    /*-example-web-share/bin/example-web\ serve\ ?*) ;;
    /usr/bin/node\ /*-example-web-share/lib/example-web/server.mjs\ ?*) ;;
    *) return 1 ;;
  esac
  printf '%s\n' "$pid"
}

# system_of PID: the toplevel the running example-web serves (its last argument).
system_of() {
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | tail -n 1
}

# describe SYSTEM: its name (nixos-version), or its store path when that is unreadable.
describe() {
  cat "$1/nixos-version" 2>/dev/null || printf '%s\n' "$1"
}

port_80_listening() {
  grep -qs '^ *[0-9]*: [0-9A-F]*:0050 [0-9A-F]*:0000 0A ' /proc/net/tcp /proc/net/tcp6
}

# wait_gone PID TRIES: waits until PID has exited, checking every 0.1 s, at most TRIES times.
wait_gone() {
  tries=$2
  while alive "$1"; do
    [ "$tries" -gt 0 ] || return 1
    tries=$((tries - 1))
    sleep 0.1
  done
}

# wait_port_80_free TRIES: the same, until nothing listens on port 80.
wait_port_80_free() {
  tries=$1
  while port_80_listening; do
    [ "$tries" -gt 0 ] || return 1
    tries=$((tries - 1))
    sleep 0.1
  done
}

stop_service() {
  stop_pid=$1
  say "stopping $unit ($2)"
  kill -s TERM "$stop_pid" 2>/dev/null
  if ! wait_gone "$stop_pid" 50; then
    say "warning: $unit ($2) did not stop within 5 s of SIGTERM; sending SIGKILL"
    kill -s KILL "$stop_pid" 2>/dev/null
    wait_gone "$stop_pid" 20 || say "warning: $unit ($2, pid $stop_pid) is still running"
  fi
  wait_port_80_free 20 || say "warning: port 80 is still in use after stopping $unit"
  rm -f "$pidfile"
}

# start_service: starts example-web detached (its own session, stdin from /dev/null, output
# appended to the log), so that it outlives the SSH session that ran the switch, then waits
# until it answers as this system. Fails when it does not.
start_service() {
  say "starting $unit ($name)"
  (
    cd / || exit 1
    setsid env -i PATH=/usr/bin:/bin "$server" serve "$out" </dev/null >>"$logfile" 2>&1 9>&- &
    printf '%s\n' "$!" >"$pidfile.tmp"
  ) || return 1
  mv -f "$pidfile.tmp" "$pidfile" || return 1
  new_pid=$(cat "$pidfile")
  if "$server" wait-up "$new_pid" "$out" "$start_timeout_ms"; then
    return 0
  fi
  alive "$new_pid" && kill -s KILL "$new_pid" 2>/dev/null
  rm -f "$pidfile"
  return 1
}

# activate: points /run/current-system at this system, atomically.
activate() {
  tmp=/run/.current-system.tmp.$$
  rm -f "$tmp"
  if ! { ln -s "$out" "$tmp" && mv -T "$tmp" /run/current-system; }; then
    rm -f "$tmp"
    say "error: cannot point /run/current-system at $out"
    return 1
  fi
}

switch() {
  # One switch at a time on a host; the lock goes when this process exits.
  exec 9>"$lockfile"
  if ! flock -w 30 9; then
    say "error: another switch-to-configuration still runs after 30 s"
    exit 1
  fi
  old_pid=$(running_pid) || old_pid=
  if [ -n "$old_pid" ] && [ "$(system_of "$old_pid")" = "$out" ] &&
    "$server" wait-up "$old_pid" "$out" 2000 2>/dev/null; then
    # NixOS leaves a unit whose configuration did not change alone; so do we.
    activate || exit 2
    say "$unit ($name) already runs this system; left running"
    exit 0
  fi
  if [ -n "$old_pid" ]; then
    stop_service "$old_pid" "$(describe "$(system_of "$old_pid")")"
  fi
  activate || exit 2
  if [ "$start" = hang ]; then
    say "starting $unit ($name): it never comes up; waiting for it"
    sleep 100000
    exit 4
  fi
  if ! start_service; then
    say "warning: the following units failed: $unit.service"
    say "last lines of $logfile:"
    tail -n 5 "$logfile" 2>/dev/null | sed 's/^/  /' >&2
    exit 4
  fi
  say "$unit ($name) is up on port 80"
  exit 0
}

dry_activate() {
  say "would activate $out ($name)"
  old_pid=$(running_pid) || old_pid=
  if [ -n "$old_pid" ] && [ "$(system_of "$old_pid")" = "$out" ]; then
    say "would leave $unit ($name) running"
    exit 0
  fi
  if [ -n "$old_pid" ]; then
    say "would stop $unit ($(describe "$(system_of "$old_pid")"))"
  fi
  say "would start $unit ($name)"
  exit 0
}

if [ $# -ne 1 ]; then
  usage
  exit 1
fi
case $1 in
  switch | test) switch ;;
  boot)
    say "$name ($out) will be used at the next boot; nothing changed now"
    exit 0
    ;;
  dry-activate) dry_activate ;;
  *)
    say "unknown action: $1"
    usage
    exit 1
    ;;
esac
