#!/bin/sh
# nixship's activation contract: the one script that runs on a host, whatever the delivery
# mode (piped over SSH as `sh -s -- COMMAND ...`, embedded in the SSM document, run by the
# agent). It needs only a POSIX sh, coreutils and Nix.
#
#   activate --path P [--action switch|boot|test|dry-activate] [--substituter URL]...
#            [--trusted-key KEY]... [--profile PROFILE] [--health-cmd CMD]...
#            [--health-timeout S] [--confirm-timeout S --token T]
#       1. realise P (from the substituters, signatures required; else it must be present)
#       2. set the system profile (switch, boot)
#       3. switch-to-configuration ACTION (through systemd-run where systemd runs)
#       4. health checks within a timeout (and no failed systemd units, where systemd runs)
#       5. with --confirm-timeout: a detached watcher waits for `confirm --token T`
#       6. on a failure or a missing confirmation, back to the previous generation
#   confirm --token T        keep the new system (the watcher stops waiting)
#   abort --token T          roll back now instead of waiting for the timeout
#   rollback [--to GEN]      switch to the previous generation, or generation GEN
#   status                   the current, booted and profile systems and recent generations
#
# Output: one JSON object on the last line of stdout; logs go to stderr.
# Exit codes: 0 done; 2 bad usage; 3 the path could not be realised; 4 switch-to-configuration
# failed; 5 a health check failed; 6 no confirmation (or aborted); 7 the rollback itself
# failed; 8 another activation holds the lock; 9 no such generation to roll back to.
# After 4, 5 and 6 the host is back on its previous system when it had one ("rolledBack").
set -u
umask 022
PATH="$PATH:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin"

state_dir=/run/nixship
profile=/nix/var/nix/profiles/system

log() { printf 'activate: %s\n' "$*" >&2; }

# Where a link leads, only if it leads somewhere that exists (else empty).
resolve() { [ -e "$1" ] && readlink -f "$1"; }

# A JSON string: escapes, and control characters dropped. Most values (paths, actions,
# tokens) need no escaping and take no subprocess.
json_str() {
  case $1 in
    *[\"\\]* | *[![:print:]]*)
      printf '"%s"' "$(printf '%s' "$1" | tr '\n\t' '  ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')" ;;
    *) printf '"%s"' "$1" ;;
  esac
}

# "null" for an empty value, a JSON string otherwise.
json_opt() { if [ -n "$1" ]; then json_str "$1"; else printf 'null'; fi; }
json_num() { if [ -n "$1" ]; then printf '%s' "$1"; else printf 'null'; fi; }

usage() {
  log "$1"
  printf '{"ok":false,"result":"usage","exitCode":2,"message":%s}\n' "$(json_str "$1")"
  exit 2
}

# The generation number a profile link points at (system-12-link -> 12), or empty.
generation_of() {
  link=$(readlink "$1" 2>/dev/null) || return 0
  printf '%s' "$link" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p'
}

current_generation() { generation_of "$profile"; }

# The system of generation $1 of the profile.
generation_path() { resolve "$profile-$1-link"; }

# The highest generation below $1.
previous_generation() {
  best=""
  for link in "$profile"-*-link; do
    [ -e "$link" ] || [ -L "$link" ] || continue
    n=$(printf '%s' "$link" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p')
    [ -n "$n" ] || continue
    if [ "$n" -lt "$1" ] && { [ -z "$best" ] || [ "$n" -gt "$best" ]; }; then best=$n; fi
  done
  printf '%s' "$best"
}

have_systemd() { [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; }

# Runs switch-to-configuration of system $1 with action $2; through systemd-run where systemd
# runs, so that a dropped SSH session cannot kill it halfway.
run_switch() {
  if have_systemd; then
    systemd-run --collect --no-ask-password --pipe --quiet --service-type=exec \
      --unit="nixship-switch-$$" --wait "$1/bin/switch-to-configuration" "$2" >&2
  else
    "$1/bin/switch-to-configuration" "$2" >&2
  fi
}

# The lock is a directory (mkdir is atomic); its owner file names the holding process. A lock
# whose holder is gone (killed mid-activation, with its parent) is stale and is taken over.
lock() {
  mkdir -p "$state_dir"
  if ! mkdir "$state_dir/lock" 2>/dev/null; then
    holder=$(cat "$state_dir/lock/owner" 2>/dev/null || true)
    holder_pid=${holder%% *}
    case $holder_pid in ''|*[!0-9]*) holder_pid="" ;; esac
    if [ -n "$holder_pid" ] && ! kill -0 "$holder_pid" 2>/dev/null; then
      log "taking over a stale lock (${holder#* }, process $holder_pid is gone)"
      rm -rf "$state_dir/lock"
    fi
    if ! mkdir "$state_dir/lock" 2>/dev/null; then
      printf '{"ok":false,"result":"locked","exitCode":8,"message":%s}\n' \
        "$(json_str "another activation is in progress on this host${holder:+ (${holder#* })}")"
      exit 8
    fi
  fi
  printf '%s %s\n' "$$" "$1" >"$state_dir/lock/owner"
  locked=1
}

unlock() { [ "${locked:-0}" = 1 ] && rm -rf "$state_dir/lock"; locked=0; }

# Back to generation $1 (system $2) with action $3; prints nothing, returns non-zero on failure.
restore() {
  if [ "$3" = switch ] || [ "$3" = boot ]; then
    nix-env -p "$profile" --switch-generation "$1" >&2 || return 1
  fi
  run_switch "$2" "$3"
}

# Ends an activation that failed in phase $1 with exit code $2 and message $3: rolls back to
# the previous system when there is one, and reports.
fail() {
  phase=$1 code=$2 message=$3 rolled=false
  if [ -n "$prev_system" ] && [ "$action" != dry-activate ]; then
    log "$message; rolling back to generation ${prev_gen:-?} ($prev_system)"
    back_action=$action
    [ "$action" = boot ] || [ "$action" = switch ] || back_action="test"
    if [ -n "$prev_gen" ] && restore "$prev_gen" "$prev_system" "$back_action"; then
      rolled=true
    elif [ -z "$prev_gen" ] && run_switch "$prev_system" test; then
      rolled=true
    else
      log "rollback failed too"
      code=7
    fi
  else
    log "$message"
  fi
  unlock
  printf '{"ok":false,"command":"activate","result":"failed","phase":%s,"exitCode":%s,"message":%s,"path":%s,"action":%s,"rolledBack":%s,"previous":%s,"previousGeneration":%s,"generation":%s}\n' \
    "$(json_str "$phase")" "$code" "$(json_str "$message")" "$(json_str "$path")" \
    "$(json_str "$action")" "$rolled" "$(json_opt "$prev_system")" "$(json_num "$prev_gen")" \
    "$(json_num "$(current_generation)")"
  exit "$code"
}

# The watcher left behind for magic rollback: waits for confirm or abort, else rolls back.
watcher_script() {
  cat <<'WATCH'
dir=$1 token=$2 timeout=$3 profile=$4 prev_gen=$5 prev_system=$6 action=$7
outcome=rolled-back reason="no confirmation within ${timeout}s"
# Sleep through the window unless woken: confirm and abort write their flag, then kill the
# sleeper. The pid file is written before the flags are checked, so a flag written before
# the wait is seen, and one written after it finds the sleeper to kill. No polling.
printf '%s confirmation window\n' "$$" >"$dir/lock/owner"
sleep "$timeout" &
sleeper=$!
printf '%s\n' "$sleeper" >"$dir/sleeper-$token"
if [ ! -e "$dir/confirmed-$token" ] && [ ! -e "$dir/abort-$token" ]; then
  wait "$sleeper"
fi
kill "$sleeper" 2>/dev/null
if [ -e "$dir/confirmed-$token" ]; then
  outcome=confirmed
elif [ -e "$dir/abort-$token" ]; then
  reason="aborted by the deployer"
fi
if [ "$outcome" = rolled-back ]; then
  ok=true
  if [ -n "$prev_system" ]; then
    if [ "$action" = switch ] && [ -n "$prev_gen" ]; then
      nix-env -p "$profile" --switch-generation "$prev_gen" || ok=false
    fi
    "$prev_system/bin/switch-to-configuration" "$action" || ok=false
  else
    ok=false reason="$reason; no previous system to go back to"
  fi
  [ "$ok" = true ] || outcome=rollback-failed
fi
printf '%s\n%s\n' "$outcome" "$reason" >"$dir/result-$token.tmp"
mv "$dir/result-$token.tmp" "$dir/result-$token"
rm -f "$dir/pending-$token" "$dir/confirmed-$token" "$dir/abort-$token" "$dir/sleeper-$token"
rm -rf "$dir/lock"
WATCH
}

start_watcher() {
  printf '%s\n' "$path" >"$state_dir/pending-$token"
  if have_systemd; then
    systemd-run --collect --no-ask-password --quiet --unit="nixship-confirm-$token" \
      sh -c "$(watcher_script)" watcher "$state_dir" "$token" "$confirm_timeout" "$profile" \
      "$prev_gen" "$prev_system" "$action" >&2
  else
    setsid sh -c "$(watcher_script)" watcher "$state_dir" "$token" "$confirm_timeout" \
      "$profile" "$prev_gen" "$prev_system" "$action" \
      </dev/null >>"$state_dir/watch-$token.log" 2>&1 &
  fi
}

cmd_activate() {
  path="" action=switch subs="" keys="" health_timeout=30 confirm_timeout=0 token=""
  health_cmds=""
  while [ $# -gt 0 ]; do
    case $1 in
      --path) path=${2-}; shift 2 ;;
      --action) action=${2-}; shift 2 ;;
      --substituter) subs="$subs${subs:+ }${2-}"; shift 2 ;;
      --trusted-key) keys="$keys${keys:+ }${2-}"; shift 2 ;;
      --profile) profile=${2-}; shift 2 ;;
      --health-cmd) health_cmds="$health_cmds${2-}
"; shift 2 ;;
      --health-timeout) health_timeout=${2-}; shift 2 ;;
      --confirm-timeout) confirm_timeout=${2-}; shift 2 ;;
      --token) token=${2-}; shift 2 ;;
      *) usage "activate: unknown option '$1'" ;;
    esac
  done
  case $path in /nix/store/?*) ;; *) usage "activate: --path must be a store path, got '$path'" ;; esac
  case $action in switch|boot|test|dry-activate) ;; *) usage "activate: unknown action '$action'" ;; esac
  case $health_timeout in ''|*[!0-9]*) usage "activate: --health-timeout must be whole seconds" ;; esac
  case $confirm_timeout in ''|*[!0-9]*) usage "activate: --confirm-timeout must be whole seconds" ;; esac
  if [ "$confirm_timeout" -gt 0 ]; then
    case $token in ''|*[!A-Za-z0-9_-]*) usage "activate: --confirm-timeout needs a --token of letters, digits, '-' or '_'" ;; esac
  fi
  prev_gen=$(current_generation)
  prev_system=$(resolve /run/current-system || true)
  lock "activate $path"

  # 1. Realise.
  if [ -n "$subs" ]; then
    log "realising $path from $subs"
    # The root keeps the new system from the garbage collector until a profile or
    # /run/current-system holds it (test and dry-activate set no profile).
    if ! nix-store --realise "$path" --add-root "$state_dir/realised" \
      --option substituters "$subs" --option trusted-public-keys "$keys" \
      --option require-sigs true --option narinfo-cache-negative-ttl 0 >/dev/null; then
      prev_system="" fail realise 3 "cannot realise $path from $subs with the trusted keys"
    fi
  elif ! nix-store --check-validity "$path" 2>/dev/null; then
    prev_system="" fail realise 3 "$path is not on this host, and no substituter was given"
  fi

  # 2. Profile.
  if [ "$action" = switch ] || [ "$action" = boot ]; then
    mkdir -p "$(dirname "$profile")"
    if ! nix-env -p "$profile" --set "$path" >&2; then
      prev_system="" fail profile 4 "cannot set the profile $profile to $path"
    fi
  fi

  # 3. Switch.
  log "switch-to-configuration $action ($path)"
  run_switch "$path" "$action"
  status=$?
  if [ "$status" -ne 0 ]; then
    fail switch 4 "switch-to-configuration $action exited with $status"
  fi
  if [ "$action" = boot ] || [ "$action" = dry-activate ]; then
    unlock
    printf '{"ok":true,"command":"activate","result":"activated","path":%s,"action":%s,"previous":%s,"previousGeneration":%s,"generation":%s}\n' \
      "$(json_str "$path")" "$(json_str "$action")" "$(json_opt "$prev_system")" \
      "$(json_num "$prev_gen")" "$(json_num "$(current_generation)")"
    exit 0
  fi

  # 4. Health.
  if [ -n "$health_cmds" ]; then
    old_ifs=$IFS
    IFS='
'
    for check in $health_cmds; do
      IFS=$old_ifs
      log "health: $check"
      if ! timeout "$health_timeout" sh -c "$check" >&2; then
        fail health 5 "health check failed: $check"
      fi
    done
    IFS=$old_ifs
  fi
  if have_systemd; then
    failed_units=$(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
    [ -z "$failed_units" ] || fail health 5 "failed units: $failed_units"
  fi

  # 5. Confirmation window (magic rollback).
  if [ "$confirm_timeout" -gt 0 ]; then
    rm -f "$state_dir/result-$token"
    start_watcher
    locked=0 # the watcher releases the lock
    printf '{"ok":true,"command":"activate","result":"awaiting-confirmation","token":%s,"confirmTimeout":%s,"path":%s,"action":%s,"previous":%s,"previousGeneration":%s,"generation":%s}\n' \
      "$(json_str "$token")" "$confirm_timeout" "$(json_str "$path")" "$(json_str "$action")" \
      "$(json_opt "$prev_system")" "$(json_num "$prev_gen")" "$(json_num "$(current_generation)")"
    exit 0
  fi
  unlock
  printf '{"ok":true,"command":"activate","result":"activated","path":%s,"action":%s,"previous":%s,"previousGeneration":%s,"generation":%s}\n' \
    "$(json_str "$path")" "$(json_str "$action")" "$(json_opt "$prev_system")" \
    "$(json_num "$prev_gen")" "$(json_num "$(current_generation)")"
  exit 0
}

# confirm or abort: signal the watcher, then wait (bounded) for its outcome.
cmd_settle() {
  verb=$1 token=""
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --token) token=${2-}; shift 2 ;;
      *) usage "$verb: unknown option '$1'" ;;
    esac
  done
  case $token in ''|*[!A-Za-z0-9_-]*) usage "$verb: --token is required" ;; esac
  if [ ! -e "$state_dir/pending-$token" ] && [ ! -e "$state_dir/result-$token" ]; then
    printf '{"ok":false,"command":"%s","result":"unknown-token","exitCode":9,"message":%s}\n' \
      "$verb" "$(json_str "no activation is waiting for token $token")"
    exit 9
  fi
  if [ "$verb" = confirm ]; then : >"$state_dir/confirmed-$token"; else : >"$state_dir/abort-$token"; fi
  # Wake the watcher (see watcher_script).
  sleeper=$(cat "$state_dir/sleeper-$token" 2>/dev/null || true)
  [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
  i=0
  while [ ! -e "$state_dir/result-$token" ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  outcome=$(sed -n 1p "$state_dir/result-$token" 2>/dev/null || true)
  reason=$(sed -n 2p "$state_dir/result-$token" 2>/dev/null || true)
  case $outcome in
    confirmed) code=0 ok=true ;;
    rolled-back) code=6 ok=false; [ "$verb" = abort ] && code=0 && ok=true ;;
    rollback-failed) code=7 ok=false ;;
    *) code=7 ok=false outcome=unknown reason="the watcher did not report within 60s" ;;
  esac
  printf '{"ok":%s,"command":"%s","result":%s,"exitCode":%s,"message":%s,"generation":%s,"current":%s}\n' \
    "$ok" "$verb" "$(json_str "$outcome")" "$code" "$(json_str "$reason")" \
    "$(json_num "$(current_generation)")" "$(json_opt "$(resolve /run/current-system || true)")"
  exit "$code"
}

cmd_rollback() {
  to=""
  while [ $# -gt 0 ]; do
    case $1 in
      --to) to=${2-}; shift 2 ;;
      --profile) profile=${2-}; shift 2 ;;
      *) usage "rollback: unknown option '$1'" ;;
    esac
  done
  case $to in *[!0-9]*) usage "rollback: --to must be a generation number" ;; esac
  from=$(current_generation)
  [ -n "$to" ] || to=$(previous_generation "${from:-0}")
  target=""
  [ -z "$to" ] || target=$(generation_path "$to")
  if [ -z "$to" ] || [ -z "$target" ]; then
    printf '{"ok":false,"command":"rollback","result":"no-generation","exitCode":9,"message":%s,"generation":%s}\n' \
      "$(json_str "no generation ${to:-before ${from:-none}} in $profile")" "$(json_num "$from")"
    exit 9
  fi
  lock "rollback to $to"
  log "rolling back from generation ${from:-?} to $to ($target)"
  if ! restore "$to" "$target" switch; then
    unlock
    printf '{"ok":false,"command":"rollback","result":"failed","exitCode":7,"message":%s,"generation":%s}\n' \
      "$(json_str "switching to generation $to failed")" "$(json_num "$(current_generation)")"
    exit 7
  fi
  unlock
  printf '{"ok":true,"command":"rollback","result":"rolled-back","from":%s,"generation":%s,"path":%s}\n' \
    "$(json_num "$from")" "$to" "$(json_str "$target")"
}

cmd_status() {
  while [ $# -gt 0 ]; do
    case $1 in
      --profile) profile=${2-}; shift 2 ;;
      *) usage "status: unknown option '$1'" ;;
    esac
  done
  gens=""
  for n in $(for link in "$profile"-*-link; do
    [ -L "$link" ] && printf '%s\n' "$link" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p'
  done | sort -n | tail -n 10); do
    gens="$gens${gens:+,}{\"generation\":$n,\"path\":$(json_str "$(generation_path "$n")")}"
  done
  pending=""
  for f in "$state_dir"/pending-*; do [ -e "$f" ] && pending=${f##*/pending-}; done
  printf '{"ok":true,"command":"status","current":%s,"booted":%s,"profile":%s,"generation":%s,"generations":[%s],"pending":%s}\n' \
    "$(json_opt "$(resolve /run/current-system || true)")" \
    "$(json_opt "$(resolve /run/booted-system || true)")" \
    "$(json_opt "$(resolve "$profile" || true)")" \
    "$(json_num "$(current_generation)")" "$gens" "$(json_opt "$pending")"
}

[ $# -gt 0 ] || usage "expected a command: activate, confirm, abort, rollback or status"
command=$1
shift
case $command in
  activate) cmd_activate "$@" ;;
  confirm) cmd_settle confirm "$@" ;;
  abort) cmd_settle abort "$@" ;;
  rollback) cmd_rollback "$@" ;;
  status) cmd_status "$@" ;;
  *) usage "unknown command '$command'" ;;
esac
