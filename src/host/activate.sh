#!/bin/sh
# Generated from src/host/activate/ (parts.json) by scripts/assemble-activate.mjs: do not edit
# this file by hand; edit its parts, then run `npm run assemble:activate`.
# nixship's activation contract: the one script that runs on a host, whatever the delivery
# mode (piped over SSH as `sh -s -- COMMAND ...`, embedded in the SSM document, run by the
# agent). It needs only a POSIX sh, coreutils and Nix (with secrets, age; fetching them, curl).
#
#   activate --path P [--action switch|boot|test|dry-activate] [--substituter URL]...
#            [--trusted-key KEY]... [--profile PROFILE] [--health-cmd CMD]... [--health-once CMD]...
#            [--health-timeout S] [--activation-timeout S] [--token T [--confirm-timeout S]]
#            [--secrets [--age P] [--host-key FILE] [--secrets-url URL --secrets-sha256 HEX]]
#            [--delta-tool D]
#       1. realise P (from the substituters, signatures required; else it must be present);
#          with --delta-tool D (a store path holding bin/zstd, realised from the substituters
#          as --age's is; with pinned trust, signed by a pinned key, or else the zstd of the
#          PATH nixship-activate sets, a store path of its closure), the paths P lacks are
#          first rebuilt where they can be from deltas against the running system's paths
#          (docs/deltas.md), into a local cache the realise asks first; Nix checks them as any
#          path. What came by delta and what whole is reported ("delta"); a delta that does not
#          apply, or a tool that cannot be had, only means paths come whole
#       2. with --secrets: install the host's secrets (see "Secrets" below)
#       3. set the system profile (switch, boot): a new generation, numbered one past the
#          highest the profile ever had (recorded in /nix/var/nixship/generations), so that the
#          number of a generation a failure removed is never made again
#       4. switch-to-configuration ACTION (through systemd-run where systemd runs)
#       5. health checks, each within --health-timeout (and no failed systemd units); one that
#          fails is reported with its exit code and the end of its output
#       6. with --confirm-timeout: a detached watcher waits for `confirm --token T`
#       7. on a failure, a timeout, an abort or no confirmation: back to the previous
#          generation (the profile, then the previous system's switch-to-configuration)
#       Steps 1-4 end within --activation-timeout seconds of the start (default 600); past
#       it what runs is stopped (its process group or systemd unit), the host goes back, and
#       the result is "timed-out" (exit 10).
#   activate ... --action boot --boot-token T
#                            then also: record the pending boot under T (on the disk, in
#                            /nix/var/nixship/boot-pending, with this boot's id), for after-boot,
#                            confirm-boot and abort-boot once the host booted it
#   activate ... --action boot --reboot-token T
#            [--caller-reboots]
#                            as --boot-token T, then reboot 2 s later with the running
#                            system's systemctl (--caller-reboots: the caller reboots, as SSM's
#                            agent does on exit 194), and answer "rebooting" with this "bootId"
#   after-boot --token T [--health-cmd C]... [--health-once C]... [--health-timeout S]
#              [--reboot-rollback]
#                            after that reboot: the host must run the system it rebooted for
#                            (else its boot loader fell back), then pass its checks ("booted");
#                            otherwise it goes back, as abort-boot does. In the boot the pending
#                            one was recorded in, it changes nothing ("not-rebooted", exit 9)
#   confirm-boot --token T   keep the rebooted system: its boot marked good (systemd-bless-boot
#                            good, where the boot loader counts boots)
#   abort-boot --token T [--reboot-rollback]
#                            the profile back on the previous generation (its boot entry the
#                            default again), the new one removed and its boot marked bad; with
#                            --reboot-rollback, a reboot into the previous system
#   confirm --token T        keep the new system (the watcher stops waiting)
#   abort --token T          roll back now: the activation with that token is stopped (and
#                            rolls back), or its confirmation window closed at once
#   rollback [--to GEN] [--activation-timeout S]
#                            switch to the previous generation, or generation GEN
#   prune --keep N [--gc-timeout S]
#                            after a confirmed activation: remove the profile's generations
#                            beyond the newest N, never the current one or the one before it
#                            (the rollback target), then collect garbage (nix-store --gc, the
#                            running and booted systems rooted) within S seconds (default 300);
#                            reports kept and removed generations, gc (done, timed-out or
#                            failed), deletedPaths and freedMiB
#   status [--check-paths]   the current, booted and profile systems, recent generations,
#                            the activation holding the lock, this boot (its id, what
#                            systemd-bless-boot says of it, a reboot pending confirmation) and
#                            the sha256 of the installed secrets' manifest ("secrets"); with --check-paths, also which
#                            of the store paths in $NIXSHIP_CHECK_PATHS (one per line, set
#                            before the script in its input) the store lacks ("missing": their
#                            hash parts, or null when the store cannot be asked within 20 s)
#   (pinned trust) With NIXSHIP_TRUST_FILE set (by the host's installed `nixship-activate`,
#   never by a caller: sudo resets the environment), the host trusts only what that file says:
#   a root-owned file, writable by root alone, of "substituter URL" and "trusted-key NAME:KEY"
#   lines. --substituter and --trusted-key are then ignored, every system and package realised
#   must be signed by a pinned key (also one already in the store), and what would let a caller
#   run a command or write a file of its choice as root is refused: --profile, --host-key (but
#   the default), a --health-cmd or --health-once that the system does not declare itself (one
#   line of PATH/nixship/health-commands each), and a secret whose "NAME OWNER GROUP MODE PATH"
#   is not a line of PATH/nixship/secrets (exit 11); --age must be signed by a pinned key. The
#   paths of `status --check-paths` and the secrets bundle come on stdin (the wrapper is not
#   piped), at most 2 MiB and 8 MiB. `status` reports the pinned keys' names and
#   substituters ("pinned", null without pinned trust) and whether the host has the installed
#   script, /run/current-system/sw/bin/nixship-activate ("pinnedActivator").
#   closure --path P         P's closure as the host's store has it (for a plan's diff, when
#                            the cache lacks the system the host runs): "closure" is base64 of
#                            one line per path, "PATH NARSIZE I J ..." (I, J: the lines, from 1,
#                            of its references); exit 3 when the store lacks P, 13 when the
#                            closure is over 700 kB so encoded, or cannot be read within 60 s
#
# Secrets (--secrets): a bundle of age files, in $NIXSHIP_SECRETS (set before the script in its
# input) or fetched from --secrets-url (within 30 s, at most 8 MiB, refused unless its sha256 is
# --secrets-sha256). Its first line is "nixship-secrets 1", then one line per secret, fields
# separated by one space: "NAME OWNER GROUP MODE PATH SHA256 BASE64" (PATH under /run; SHA256
# of the age file, which BASE64 holds). Each is decrypted with age (--age P: P/bin/age, realised
# as the system is; else age from PATH) and the host's SSH key (--host-key, default
# /etc/ssh/ssh_host_ed25519_key) into a file beside its PATH (every directory on its way, as
# written and as resolved, root's alone, or the secret is refused), which must be on a tmpfs, with the
# line's owner, group and mode. Only once all are does each replace its PATH (a rename), the
# PATHs that the previous bundle had and this one lacks go, and the manifest (the lines without
# BASE64) is kept in /run/nixship/secrets; status reports its sha256. A failure (exit 11; a
# malformed bundle: exit 2, naming the line) removes what was written and leaves the installed
# secrets as they were. A later failure rolls the system back but keeps the new secrets.
# Plaintext goes nowhere but those tmpfs files: never to a disk, a log or the output.
#
# One activation at a time: the lock (/run/nixship/lock) records its holder (pid, process
# start time, since, deadline, command, previous generation and system, and the process group
# or unit of what it runs). activate, rollback, abort and confirm take over a lock whose
# holder is gone or past its deadline: they stop what it left running, put the host back on
# the recorded generation and system, and say so ("taking over", "tookOver"). A live holder
# within its deadline is refused (exit 8), named, with since and until when. INT and TERM stop
# an activation and roll it back (exit 6); HUP and PIPE are ignored: a deployer whose session
# vanishes leaves the activation to end by itself, and its confirmation window to roll back.
#
# Store paths taken (--path, --age, --delta-tool, closure's --path, the lines of --check-paths, and the target of a
# generation a rollback goes to) must be in canonical form, /nix/store/HASH-NAME with nothing
# before or after, or the command is refused (exit 2; a rollback's, exit 9) before anything runs:
# Nix checks a path by its text, the kernel follows links and "..". A system or age package must
# also resolve to itself once realised, and a generation's link lead straight to such a path.
#
# Output: one JSON object on the last line of stdout; logs go to stderr.
# Exit codes: 0 done; 2 bad usage; 3 the path could not be realised; 4 switch-to-configuration
# failed; 5 a health check failed; 6 no confirmation, aborted or interrupted; 7 the rollback
# itself failed; 8 another activation holds the lock; 9 no such generation to roll back to, no
# activation or pending boot with that token, or a pending boot not booted yet; 10 the
# activation ran past its timeout; 11 the secrets could not be installed (nothing else
# changed); 12 generations could not be removed (prune). After
# 4, 5, 6 and 10 the host is back on its previous system when it had one ("rolledBack"), and its
# profile (what it boots next) on the previous generation. When it had none (a first deploy), or
# the rollback failed, the host runs the failed system: it is marked failed (the file "failed"
# in the state directory, which `status` reports while that system runs) until an activation
# of a system succeeds.
set -u
umask 022
PATH="$PATH:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin"
# Hangups and writes to a closed pipe are ignored, here and in what this script runs: output
# that cannot be written is lost, nothing else.
trap '' HUP PIPE

state_dir=/run/nixship
profile=/nix/var/nix/profiles/system
# Seconds a switch back may take (after a failure, a timeout or an abort, and in a takeover);
# what is stopped gets KILL_GRACE seconds from TERM to KILL. SETTLE_TIME bounds both (the end
# of an activation): part of a holder's deadline, and what confirm and abort wait at most.
ROLLBACK_TIMEOUT=45 KILL_GRACE=5
SETTLE_TIME=$((ROLLBACK_TIMEOUT + 2 * KILL_GRACE + 5))
# The largest secrets bundle taken (MAX_SECRETS_BUNDLE in host/secrets-bundle.ts), and the
# seconds that fetching it, or decrypting one secret, may take.
MAX_SECRETS_BUNDLE=8388608 SECRETS_TIMEOUT=30
# The most a pinned script reads of the paths `status --check-paths` asks about (2 MiB: the
# deployer asks at most 20,000 paths of about 80 bytes).
CHECK_PATHS_LIMIT=2097152
# The installed activation script of a host with pinned trust (nixship's NixOS module).
PINNED_ACTIVATOR=/run/current-system/sw/bin/nixship-activate
# Where the secrets step keeps the bundle, the age files and the list of what it wrote.
secrets_work=$state_dir/secrets-work
# A reboot under way (see "Reboots"), and the running system's tools for it.
boot_dir=/nix/var/nixship boot_file=/nix/var/nixship/boot-pending
# The highest generation number each profile ever had (see new_generation), on the disk: it
# must outlive a reboot, as the profile's generations do.
generations_dir=/nix/var/nixship/generations
BLESS=/run/current-system/systemd/lib/systemd/systemd-bless-boot
SYSTEMCTL=/run/current-system/sw/bin/systemctl

log() { printf 'activate: %s\n' "$*" >&2; }

# Marks the start of phase $1 for whoever drives the script: a line of its own on stderr,
# "activate: @phase NAME" (realise, secrets, profile, switch, reboot, health, rollback).
mark_phase() { printf 'activate: @phase %s\n' "$1" >&2; }

# Where a link leads, only if it leads somewhere that exists (else empty).
resolve() { [ -e "$1" ] && readlink -f "$1"; }

# A store path in canonical form: /nix/store/, 32 characters of Nix's base-32, "-" and a name of
# Nix's characters, nothing before or after (no "..", ".", "//", trailing part or second line).
STORE_PATH_RE='/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+._?=-]{1,211}'

# Whether $1 is a store path in canonical form. Nix checks a path by its text while the kernel
# follows every link and ".." on the way, so nothing else is taken where a path is checked.
store_path_form() {
  case $1 in *[!A-Za-z0-9+._?=/-]*) return 1 ;; esac
  printf '%s\n' "$1" | LC_ALL=C grep -qx -E -e "$STORE_PATH_RE"
}

# Whether store path $1 (in canonical form, present) resolves to itself: no link on the way or
# at its end, so that what runs from it is what Nix checked.
store_path_resolves() { [ "$(readlink -f "$1" 2>/dev/null)" = "$1" ]; }

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

# Marks system $1 failed on this host for reason $2 (its first line, at most 500 bytes): the host
# runs it, and could not go back. `status` reports it while the host runs that system.
mark_failed() {
  printf 'path=%s\nsince=%s\nreason=%s\n' "$1" "$(date +%s)" \
    "$(printf '%s\n' "$2" | head -n 1 | head -c 500)" >"$state_dir/failed.tmp" &&
    mv -f "$state_dir/failed.tmp" "$state_dir/failed"
}

# The failed mark as JSON when it names the system the host runs, else null.
failed_json() {
  f_path=$(sed -n 's/^path=//p' "$state_dir/failed" 2>/dev/null)
  if [ -z "$f_path" ] || [ "$f_path" != "$(resolve /run/current-system || true)" ]; then
    printf 'null'
    return 0
  fi
  printf '{"path":%s,"since":%s,"reason":%s}' "$(json_str "$f_path")" \
    "$(json_num "$(sed -n 's/^since=//p' "$state_dir/failed" | grep -x '[0-9]*')")" \
    "$(json_str "$(sed -n 's/^reason=//p' "$state_dir/failed")")"
}

usage() {
  log "$1"
  printf '{"ok":false,"command":%s,"result":"usage","exitCode":2,"message":%s}\n' \
    "$(verb_json)" "$(json_str "$1")"
  exit 2
}

# The command being run, as JSON: one of the script's commands, or null (none, or unknown).
verb_json() {
  case ${command-} in
    activate | after-boot | confirm-boot | abort-boot | confirm | abort | rollback | prune | status | closure)
      json_str "$command" ;;
    *) printf 'null' ;;
  esac
}

now() { date +%s; }

# Epoch seconds as UTC ISO 8601.
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || printf '%s' "$1"; }

digits() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }

# Whole seconds without leading zeros (sh arithmetic reads 010 as octal).
decimal() {
  d=$1
  while case $d in 0?*) ;; *) false ;; esac; do d=${d#0}; done
  printf '%s' "$d"
}

# The generation number a profile link points at (system-12-link -> 12), or empty.
generation_of() {
  link=$(readlink "$1" 2>/dev/null) || return 0
  printf '%s' "$link" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p'
}

current_generation() { generation_of "$profile"; }

# The system of generation $1 of the profile.
generation_path() { resolve "$profile-$1-link"; }

# The profile's generation numbers, in ascending order, one per line.
generations() {
  for link in "$profile"-*-link; do
    [ -L "$link" ] && printf '%s\n' "$link" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p'
  done | sort -n
}

# The highest generation number the profile ever had: the one recorded (new_generation) or the
# highest it has, whichever is higher (a number of more than 15 digits is not taken).
highest_generation() {
  h_rec=$(head -c 32 "$(generation_record)" 2>/dev/null | head -n 1)
  { digits "$h_rec" && [ ${#h_rec} -le 15 ]; } || h_rec=0
  h_rec=$(decimal "$h_rec")
  h_last=$(generations | awk 'length($1) <= 15 { n = $1 } END { printf "%s", n }')
  [ -z "$h_last" ] || [ "$h_last" -le "$h_rec" ] || h_rec=$h_last
  printf '%s' "${h_rec:-0}"
}

# The file that records the highest generation number of the profile.
generation_record() {
  printf '%s/%s' "$generations_dir" "$(printf '%s' "$profile" | tr -c 'A-Za-z0-9._-' '_')"
}

# Step 3: the profile on a new generation holding system $1, within $2 seconds. Its number is
# one past the highest the profile ever had, recorded on the disk before its link is made: Nix
# numbers a generation one past the highest that exists, so once the generation of a failed
# activation is removed its number would come again, and "generation N" would name two
# systems. The link is made as `nix-env --set` makes it (nix-store --add-root: atomically, a GC
# root registered while the collector may run), then nix-env switches the profile to it under
# Nix's profile lock. A profile already on $1 stays as it is.
new_generation() {
  n_now=$(current_generation)
  if [ -n "$n_now" ] && [ "$(readlink "$profile-$n_now-link" 2>/dev/null)" = "$1" ]; then
    log "the profile $profile is on $1 already (generation $n_now)"
    return 0
  fi
  n_gen=$(($(highest_generation) + 1))
  n_rec=$(generation_record)
  if ! { mkdir -p "$generations_dir" && printf '%s\n' "$n_gen" >"$n_rec.tmp" &&
    mv -f "$n_rec.tmp" "$n_rec"; }; then
    log "cannot record generation $n_gen of $profile in $n_rec"
    return 1
  fi
  # In the lock's record before the link exists: a takeover removes it unless the profile is on
  # it (restore_previous).
  l_new_gen=$n_gen
  write_info
  n_start=$(now)
  bounded log "$2" nix-store --realise "$1" --add-root "$profile-$n_gen-link" || {
    forget_generation "$n_gen"
    return 1
  }
  n_left=$(($2 - ($(now) - n_start)))
  if [ "$n_left" -gt 0 ] && bounded log "$n_left" nix-env -p "$profile" --switch-generation "$n_gen"; then
    log "generation $n_gen of $profile: $1"
    return 0
  fi
  # The profile is not on it: no rollback or boot menu may take it for a good system.
  forget_generation "$n_gen"
  return 1
}

# The highest generation below $1.
previous_generation() { generations | awk -v below="$1" '$1 < below { best = $1 } END { printf "%s", best }'; }

have_systemd() { [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; }

# --- Processes: a pid with its start time names one process, even once the pid is reused.

# The start time of process $1 (field 22 of /proc/PID/stat), or nothing.
proc_start() {
  stat=""
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || [ -n "$stat" ] || return 0
  # shellcheck disable=SC2086 # the fields after "(comm) ": numbers and a state letter
  set -- ${stat##*) }
  [ $# -lt 20 ] || printf '%s' "${20}"
}

# Whether process $1 runs (is not a zombie) and, given $2, started at that time.
proc_alive() {
  stat=""
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || [ -n "$stat" ] || return 1
  # shellcheck disable=SC2086
  set -- "${2-}" ${stat##*) }
  case $2 in Z | X | x) return 1 ;; esac
  [ -z "$1" ] || [ "$1" = "${21-}" ]
}

# Whether a live process is in process group $1.
group_alive() {
  for f in /proc/[0-9]*/stat; do
    s=""
    { read -r s <"$f"; } 2>/dev/null || [ -n "$s" ] || continue
    # shellcheck disable=SC2086
    set -- "$1" ${s##*) }
    [ "${4-}" = "$1" ] && [ "$2" != Z ] && return 0
  done
  return 1
}

# Stops process group $1, whose leader started at $2: TERM, then KILL after KILL_GRACE
# seconds. A group led by another process (the pid reused) is left alone. Returns 1 when
# nothing of it ran.
stop_group() {
  digits "${1-}" || return 1
  g_start=$(proc_start "$1")
  if [ -n "${2-}" ] && [ -n "$g_start" ] && [ "$g_start" != "$2" ]; then return 1; fi
  group_alive "$1" || return 1
  kill -s TERM -- "-$1" 2>/dev/null
  i=0
  while group_alive "$1" && [ "$i" -lt $((KILL_GRACE * 10 + 20)) ]; do
    [ "$i" != $((KILL_GRACE * 10)) ] || kill -s KILL -- "-$1" 2>/dev/null
    sleep 0.1
    i=$((i + 1))
  done
  return 0
}

# Stops systemd unit $1 (TimeoutStopSec escalates to KILL); returns 1 when it did not run.
stop_unit() {
  have_systemd && systemctl is-active --quiet "$1" 2>/dev/null || return 1
  timeout -k 2 $((KILL_GRACE + 5)) systemctl stop "$1" >/dev/null 2>&1
  systemctl kill --signal=SIGKILL "$1" >/dev/null 2>&1
  return 0
}

# --- The lock: a directory (mkdir is atomic) whose info file records its holder.

# This process's record (see write_info); l_group or l_unit name what it runs now, l_new_gen
# the generation it made (its link may exist before the profile is on it).
locked=0 l_kind="" l_command="" l_path="" l_action="" l_token="" l_prev_gen="" l_prev_system=""
l_phase="" l_since="" l_deadline="" l_group="" l_group_start="" l_unit="" l_runner="" l_new_gen=""
took_over="" action="" path="" token="" prev_gen="" prev_system="" profile_set=0 switch_started=0
h_dir=""
self_start=$(proc_start $$)

# Replaces the lock's record of its holder (this process), atomically; key=value lines.
write_info() {
  [ "$locked" = 1 ] || return 0
  printf 'pid=%s\nstart=%s\nkind=%s\ncommand=%s\npath=%s\naction=%s\ntoken=%s\nprofile=%s\nprev_gen=%s\nprev_system=%s\nphase=%s\nsince=%s\ndeadline=%s\ngroup=%s\ngroup_start=%s\nunit=%s\nnew_gen=%s\n' \
    "$$" "$self_start" "$l_kind" "$l_command" "$l_path" "$l_action" "$l_token" "$profile" \
    "$l_prev_gen" "$l_prev_system" "$l_phase" "$l_since" "$l_deadline" "$l_group" \
    "$l_group_start" "$l_unit" "$l_new_gen" >"$state_dir/lock/info.$$" 2>/dev/null &&
    mv -f "$state_dir/lock/info.$$" "$state_dir/lock/info"
}

# Reads the record of lock directory $1 into o_*: its info file, or the owner file ("PID
# COMMAND") of an older script, a holder with no deadline. o_raw is the record as read.
read_info() {
  o_pid="" o_start="" o_kind="" o_command="" o_path="" o_action="" o_token="" o_profile=""
  o_prev_gen="" o_prev_system="" o_phase="" o_since="" o_deadline="" o_group="" o_group_start=""
  o_unit="" o_new_gen="" o_raw=""
  if [ -f "$1/info" ]; then
    while IFS= read -r line; do
      o_raw="$o_raw$line;"
      # Known keys only: the name is one of these, the value is never evaluated.
      case ${line%%=*} in
        pid | start | kind | command | path | action | token | profile | prev_gen | prev_system | \
          phase | since | deadline | group | group_start | unit | new_gen) eval "o_${line%%=*}=\${line#*=}" ;;
      esac
    done <"$1/info" 2>/dev/null
  elif [ -f "$1/owner" ]; then
    line=""
    { IFS= read -r line <"$1/owner"; } 2>/dev/null
    o_raw=$line
    o_pid=${line%% *}
    o_command=${line#"$o_pid"}
    o_command=${o_command# }
    case $o_command in "activate /"*) o_kind=activate o_path=${o_command#activate } ;; esac
  fi
  for v in pid start since deadline group group_start prev_gen new_gen; do
    eval "digits \"\$o_$v\" || o_$v=''"
  done
  case $o_token in *[!A-Za-z0-9_-]*) o_token="" ;; esac
  [ -n "$o_since" ] || o_since=$(date -r "$1" +%s 2>/dev/null || true)
}

# Reads the lock into o_* and judges it: o_alive=1 while its holder runs; o_why says why it
# may be taken over (its holder is gone, or past its deadline), empty while it may not.
judge_lock() {
  read_info "$state_dir/lock"
  j_now=$(now)
  o_alive=0 o_why=""
  if [ -n "$o_pid" ] && proc_alive "$o_pid" "$o_start"; then o_alive=1; fi
  if [ -z "$o_pid" ]; then
    # No record: a lock being taken (mkdir, then its record), or its taker killed in between.
    if [ -d "$state_dir/lock" ] && [ -n "$o_since" ] && [ $((j_now - o_since)) -gt 10 ]; then
      o_why="it records no holder"
    fi
  elif [ "$o_alive" = 0 ]; then
    o_why="its holder is gone"
  elif [ -n "$o_deadline" ] && [ "$j_now" -gt "$o_deadline" ]; then
    o_why="its holder still runs past its deadline ($(iso "$o_deadline"))"
  fi
}

# Takes the lock for this process (its record from l_*), taking over a stale one; returns 1,
# with the holder in o_*, while a live holder within its deadline keeps it.
try_lock() {
  mkdir -p "$state_dir"
  tries=0
  until mkdir "$state_dir/lock" 2>/dev/null; do
    judge_lock
    if [ -n "$o_why" ]; then
      take_over && return 0
    elif [ -d "$state_dir/lock" ]; then
      return 1
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 10 ] || return 1
    sleep 0.5
  done
  locked=1
  write_info
}

lock() { try_lock || refuse_locked; }

refuse_locked() {
  holder="${o_command:-an activation that is just starting}${o_pid:+, pid $o_pid}"
  [ -z "$o_since" ] || holder="$holder, since $(iso "$o_since")"
  if [ -n "$o_deadline" ]; then
    holder="$holder, until $(iso "$o_deadline")); it is taken over after that deadline"
  else
    holder="$holder); it is taken over once that process is gone"
  fi
  message="another activation is in progress on this host ($holder"
  log "$message"
  printf '{"ok":false,"command":%s,"result":"locked","exitCode":8,"message":%s,"since":%s,"deadline":%s}\n' \
    "$(verb_json)" \
    "$(json_str "$message")" "$(json_num "$o_since")" "$(json_num "$o_deadline")"
  exit 8
}

# Frees the lock, unless a takeover made it another's.
unlock() {
  if [ "$locked" = 1 ]; then
    u_pid=$(sed -n 's/^pid=//p' "$state_dir/lock/info" 2>/dev/null)
    if [ -z "$u_pid" ] || [ "$u_pid" = "$$" ]; then rm -rf "$state_dir/lock"; fi
  fi
  locked=0
}

# The outcome confirm and abort report for token $1: $2 (rolled-back, rollback-failed,
# confirmed), reason $3.
write_result() {
  printf '%s\n%s\n' "$2" "$3" >"$state_dir/result-$1.tmp" &&
    mv -f "$state_dir/result-$1.tmp" "$state_dir/result-$1"
}

# Takes over the stale lock judged in o_*: kills its holder if it still runs, takes the lock,
# stops what the holder left running and puts the host back on the generation and system it
# recorded, as far as its phase got. Says so in took_over. One taker at a time (a guard
# directory, given up after a minute); returns 1 when another takes over.
take_over() {
  if ! mkdir "$state_dir/takeover" 2>/dev/null; then
    t_guard=$(date -r "$state_dir/takeover" +%s 2>/dev/null || echo 0)
    [ $(($(now) - t_guard)) -gt 60 ] || return 1
    rm -rf "$state_dir/takeover"
    mkdir "$state_dir/takeover" 2>/dev/null || return 1
  fi
  t_seen=$o_raw
  judge_lock
  if [ -z "$o_why" ] || [ "$o_raw" != "$t_seen" ]; then
    rmdir "$state_dir/takeover"
    return 1
  fi
  # Bounded, and not to be interrupted halfway (callers re-arm their traps).
  trap '' INT TERM
  t_done=""
  # The holder first, so that it changes nothing more: KILL (a watcher with its whole group).
  if [ "$o_alive" = 1 ]; then
    [ "$o_kind" != window ] || kill -s KILL -- "-$o_pid" 2>/dev/null
    kill -s KILL "$o_pid" 2>/dev/null
    i=0
    while proc_alive "$o_pid" "$o_start" && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    t_done="killed it, "
    read_info "$state_dir/lock" # what it recorded last (o_why stays)
  fi
  t_sleeper=$(cat "$state_dir/sleeper-$o_token" 2>/dev/null || true)
  if digits "$t_sleeper" && [ "$(cat "/proc/$t_sleeper/comm" 2>/dev/null)" = sleep ]; then
    kill "$t_sleeper" 2>/dev/null
  fi
  rm -rf "$state_dir/lock"
  if ! mkdir "$state_dir/lock" 2>/dev/null; then
    rmdir "$state_dir/takeover"
    return 1
  fi
  locked=1
  s_kind=$l_kind s_command=$l_command s_path=$l_path s_action=$l_action s_token=$l_token
  s_phase=$l_phase s_profile=$profile s_act=$action
  [ -z "$o_profile" ] || profile=$o_profile
  # Killed while cleaning up, this record makes the next taker do it again.
  l_kind=takeover l_command="taking over from ${o_command:-an unrecorded holder}"
  l_path=$o_path l_action=$o_action l_token=$o_token l_prev_gen=$o_prev_gen
  l_prev_system=$o_prev_system l_phase=$o_phase l_new_gen=$o_new_gen
  write_info
  rmdir "$state_dir/takeover"
  ! stop_group "$o_group" "$o_group_start" || t_done="${t_done}stopped its process group $o_group, "
  [ -z "$o_unit" ] || ! stop_unit "$o_unit" || t_done="${t_done}stopped its unit $o_unit, "
  secrets_discard
  ! digits "$o_pid" || rm -rf "$state_dir/health-$o_pid"
  # What it may have changed, by its phase (nothing once it reported an outcome).
  action=$o_action prev_gen=$o_prev_gen prev_system=$o_prev_system profile_set=0 switch_started=0
  case $o_phase in switch | health | confirm | rollback) switch_started=1 profile_set=1 ;; profile) profile_set=1 ;; esac
  case $o_action in switch | boot) ;; *) profile_set=0 ;; esac
  [ -z "$o_token" ] || [ ! -e "$state_dir/result-$o_token" ] || profile_set=0 switch_started=0
  restore_previous
  case $? in
    0) t_back="rolled back to"
      [ "$profile_set" = 0 ] || [ -z "$prev_gen" ] || t_back="$t_back generation $prev_gen${r_system:+ and}"
      t_back="$t_back${r_system:+ $r_system}" ;;
    1) t_back="rolling back failed" ;;
    2) t_back="nothing to roll back" ;;
    *) t_back="no previous system to go back to" ;;
  esac
  t_since="since unknown"
  [ -z "$o_since" ] || t_since="since $(iso "$o_since")"
  took_over="taking over a stale lock: ${o_command:-an unrecorded holder} (pid ${o_pid:-unknown}, $t_since): $o_why; $t_done$t_back"
  log "$took_over"
  if [ -n "$o_token" ] && [ ! -e "$state_dir/result-$o_token" ]; then
    case $t_back in rolled* | nothing*) t_outcome="rolled-back" ;; *) t_outcome="rollback-failed" ;; esac
    write_result "$o_token" "$t_outcome" "$took_over"
  fi
  [ -z "$o_token" ] || rm -f "$state_dir/pending-$o_token" "$state_dir/confirmed-$o_token" \
    "$state_dir/abort-$o_token" "$state_dir/sleeper-$o_token"
  l_kind=$s_kind l_command=$s_command l_path=$s_path l_action=$s_action l_token=$s_token
  l_phase=$s_phase profile=$s_profile action=$s_act l_prev_gen="" l_prev_system="" l_new_gen=""
  prev_gen="" prev_system="" profile_set=0 switch_started=0
  write_info
  return 0
}

# A stale lock is taken over (the host put back) and freed; a live one is left alone.
clear_stale() {
  [ -d "$state_dir/lock" ] || return 0
  judge_lock
  [ -n "$o_why" ] || return 0
  l_kind=$1 l_command=$2 l_since=$(now)
  l_deadline=$((l_since + SETTLE_TIME))
  if try_lock; then unlock; fi
}

# --- Running things so that they can be stopped as a whole.

# Runs a command (stdin /dev/null, stdout to stderr when $1 is "log", /dev/null when "quiet",
# else to the file $1) in its own
# process group, led by coreutils timeout, which stops the group after $2 seconds (TERM, then
# KILL). The lock records the group, for an interrupt, an abort or a takeover to stop. `wait`
# returns at once on INT or TERM, whose trap prints the result (so no redirection around it).
bounded() {
  b_out=$1 b_secs=$2
  shift 2
  (
    trap - INT TERM
    case $b_out in quiet) exec >/dev/null ;; log) exec >&2 ;; *) exec >"$b_out" ;; esac
    exec timeout -k "$KILL_GRACE" "$b_secs" "$@"
  ) &
  l_group=$!
  l_group_start=$(proc_start "$l_group")
  write_info
  wait "$l_group"
  b_status=$?
  l_group="" l_group_start=""
  return "$b_status"
}

# switch-to-configuration $2 of system $1, bounded to $3 seconds, output to stderr. Where
# systemd runs, a unit (nixship-$4-PID, RuntimeMaxSec) so that a dropped session cannot kill
# it; else a process group under timeout.
run_switch() {
  if have_systemd; then
    l_unit="nixship-$4-$$"
    write_info
    (
      trap - INT TERM
      exec systemd-run --collect --no-ask-password --pipe --quiet --service-type=exec \
        --property=RuntimeMaxSec="$3" --property=TimeoutStopSec="$KILL_GRACE" \
        --unit="$l_unit" --wait "$1/bin/switch-to-configuration" "$2"
    ) >&2 &
    l_runner=$!
    wait "$l_runner"
    b_status=$?
    l_unit="" l_runner=""
    return "$b_status"
  fi
  bounded log "$3" "$1/bin/switch-to-configuration" "$2"
}

# Stops what this process runs now (see bounded and run_switch), if anything.
stop_child() {
  [ -z "$l_unit" ] || stop_unit "$l_unit"
  [ -z "$l_group" ] || stop_group "$l_group" "$l_group_start"
  [ -z "$l_runner" ] || kill "$l_runner" 2>/dev/null # (systemd-run --wait, its unit stopped)
  for p in $l_group $l_runner; do wait "$p" 2>/dev/null; done
  l_group="" l_group_start="" l_unit="" l_runner=""
}

# --- activate

# --activation-timeout: whole seconds, 1 to 999999 (for command $1).
check_activation_timeout() {
  activation_timeout=$(decimal "$activation_timeout")
  if ! digits "$activation_timeout" || [ ${#activation_timeout} -gt 6 ] || [ "$activation_timeout" -lt 1 ]; then
    usage "$1: --activation-timeout must be whole seconds, from 1 to 999999"
  fi
}

# What is left of the activation timeout, in whole seconds.
remaining() {
  r=$((deadline - $(now)))
  [ "$r" -gt 0 ] || r=0
  printf '%s' "$r"
}

# Removes generation $1 of the profile, which a failed activation made: no rollback, prune or
# boot menu may take it for a good system (nixship's own records keep what ran). Not the one
# the profile points at, nor the previous one.
forget_generation() {
  [ -n "$1" ] && [ "$1" != "$prev_gen" ] && [ "$1" != "$(current_generation)" ] &&
    [ -L "$profile-$1-link" ] || return 0
  nix-env -p "$profile" --delete-generations "$1" >&2 ||
    log "could not remove generation $1 (a failed system) from $profile"
}

# Undoes what this activation changed: the profile back to the previous generation, and the
# previous system switched to again (bounded). Returns 0 when done, 1 when a step failed, 2
# when nothing had changed, 3 when there is no previous system to go back to.
restore_previous() {
  r_done=0 r_failed=0 r_missing=0 r_system=""
  if [ "$profile_set" = 1 ] && [ -n "$prev_gen" ] && [ "$(current_generation)" != "$prev_gen" ]; then
    r_new=$(current_generation)
    if nix-env -p "$profile" --switch-generation "$prev_gen" >&2; then
      r_done=1
      forget_generation "$r_new"
    else
      r_failed=1
    fi
  fi
  # A generation made but never switched to (stopped between its link and the switch).
  [ "$profile_set" = 0 ] || forget_generation "$l_new_gen"
  if [ "$switch_started" = 1 ] && [ "$action" != dry-activate ]; then
    r_system=$prev_system
    if [ "$action" = boot ]; then
      r_system=""
      [ -z "$prev_gen" ] || r_system=$(generation_path "$prev_gen")
    fi
    if [ -z "$r_system" ]; then
      r_missing=1
    else
      log "rolling back: switch-to-configuration $action ($r_system)"
      if run_switch "$r_system" "$action" "$ROLLBACK_TIMEOUT" rollback; then r_done=1; else r_failed=1; fi
    fi
  fi
  [ "$r_failed" = 0 ] || return 1
  [ "$r_missing" = 0 ] || return 3
  [ "$r_done" = 1 ] || return 2
}

took_over_json() { [ -z "$took_over" ] || printf ',"tookOver":%s' "$(json_str "$took_over")"; }

# Ends a failed activation: stops what runs, undoes what it changed, and reports result $1
# (failed or timed-out) in phase $2, with exit code $3 and message $4.
finish_failed() {
  trap '' INT TERM
  umask 022
  f_result=$1 f_phase=$2 code=$3 message=$4 rolled=false outcome=rolled-back
  case $f_phase in realise | secrets | profile | switch | reboot | health) ;; *) f_phase=realise ;; esac
  stop_child
  secrets_discard
  delta_discard
  [ -z "$h_dir" ] || rm -rf "$h_dir"
  if [ "$profile_set" = 1 ] || [ "$switch_started" = 1 ]; then
    mark_phase rollback
    log "$message; rolling back to generation ${prev_gen:-?} (${prev_system:-no previous system})"
    l_phase=rollback
    write_info
    restore_previous
    case $? in
      0) rolled=true ;;
      1) log "rollback failed too"; code=7 outcome=rollback-failed
        message="$message; the rollback failed too"
        [ "$switch_started" = 0 ] || mark_failed "$path" "$message" ;;
      3) outcome=rollback-failed
        message="$message; no earlier system to go back to: the host runs $path, marked failed until an activation succeeds"
        log "$message"
        mark_failed "$path" "$message" ;;
    esac
  else
    log "$message"
  fi
  # The lock goes first: once abort sees the outcome, the host takes the next activation.
  unlock
  if [ -n "$token" ]; then
    write_result "$token" "$outcome" "$message"
    rm -f "$state_dir/abort-$token"
  fi
  printf '{"ok":false,"command":"activate","result":%s,"phase":%s,"exitCode":%s,"message":%s,"path":%s,"action":%s,"rolledBack":%s,"previous":%s,"previousGeneration":%s,"generation":%s%s}\n' \
    "$(json_str "$f_result")" "$(json_str "$f_phase")" "$code" "$(json_str "$message")" \
    "$(json_str "$path")" "$(json_str "$action")" "$rolled" "$(json_opt "$prev_system")" \
    "$(json_num "$prev_gen")" "$(json_num "$(current_generation)")" "$(took_over_json)"
  exit "$code"
}

fail() { finish_failed failed "$@"; }

# The activation ran past its timeout in phase $1.
timed_out() {
  t_limit="the activation timeout of ${activation_timeout}s"
  case $1 in
    realise) t_what="realising $path ran past $t_limit; stopped it" ;;
    secrets) t_what="installing the secrets ran past $t_limit; stopped it" ;;
    profile) t_what="setting the profile $profile ran past $t_limit; stopped it" ;;
    *) t_what="switch-to-configuration ran past $t_limit; stopped it"
      [ "$switch_started" = 1 ] || t_what="$t_limit ran out before switch-to-configuration" ;;
  esac
  finish_failed timed-out "$1" 10 "$t_what"
}

aborted() { [ -n "$token" ] && [ -e "$state_dir/abort-$token" ]; }

# INT or TERM ($1) during the activation: stop it and roll back.
interrupted() {
  trap '' INT TERM
  if aborted; then
    finish_failed failed "$l_phase" 6 "aborted by the deployer"
  fi
  finish_failed failed "$l_phase" 6 "interrupted by SIG$1"
}

# Why health check $check failed for good (bounded's status h_status, on attempt h_tries): its
# exit code, or that the health timeout stopped it, and the end of its last attempt's output,
# from h_dir: the last 10 lines and at most 1000 bytes, control characters removed, lines joined
# by " | " (none kept when it had to be killed). The check is named in at most 500 bytes: the
# message stays far below the 4096 characters the deployer takes.
health_failure() {
  case $h_status in
    124) h_why="still running when the health timeout of ${health_timeout}s ran out; stopped it" ;;
    137) h_why="still running when the health timeout of ${health_timeout}s ran out, and TERM did not stop it; killed it" ;;
    *) h_code=$(cat "$h_dir/code" 2>/dev/null)
      h_why="could not be run"
      ! digits "$h_code" || h_why="exit code $h_code" ;;
  esac
  h_s=s
  [ "$h_tries" != 1 ] || h_s=""
  h_within="in ${health_timeout}s"
  [ "$h_once" = false ] || h_within="only: retry false"
  # (A UTF-8 continuation byte, where the cut leaves one first; a C1 control in UTF-8.)
  h_cont=$(printf '[\200-\277]') h_c1=$(printf '\302[\200-\237]')
  h_tail=$(tail -n 10 "$h_dir/out" 2>/dev/null | tail -c 1000 | tr '\t' ' ' |
    tr -d '\000-\010\013-\037\177' | LC_ALL=C sed -e "1s/^$h_cont*//" -e "s/$h_c1//g" |
    LC_ALL=C awk 'NF { printf "%s%s", sep, $0; sep = " | " }')
  h_name=$(printf '%s' "$check" | head -c 500)
  [ "$h_name" = "$check" ] || h_name="$h_name..."
  printf 'health check failed: %s: %s (%s attempt%s %s); ' "$h_name" "$h_why" "$h_tries" \
    "$h_s" "$h_within"
  if [ -n "$h_tail" ]; then
    printf 'output: "%s"' "$h_tail"
  elif [ "$h_status" = 137 ]; then
    printf 'its output went with it'
  else
    printf 'no output'
  fi
}

# Step $1 failed (code $2, message $3): because of an abort, the timeout, or by itself.
step_failed() {
  aborted && finish_failed failed "$1" 6 "aborted by the deployer"
  [ "$1" = health ] || [ "$(remaining)" -gt 0 ] || timed_out "$1"
  fail "$@"
}

activated_json() {
  printf '"path":%s,"action":%s,"previous":%s,"previousGeneration":%s,"generation":%s%s%s}\n' \
    "$(json_str "$path")" "$(json_str "$action")" "$(json_opt "$prev_system")" \
    "$(json_num "$prev_gen")" "$(json_num "$(current_generation)")" "$(took_over_json)" \
    "$(delta_json)"
}

# The activation went through: report it, leaving a watcher to wait for the confirmation
# when $1 is "window" (unless an abort came first).
succeed() {
  trap '' INT TERM
  aborted && finish_failed failed "$l_phase" 6 "aborted by the deployer"
  if [ "$1" = window ]; then
    rm -f "$state_dir/result-$token"
    start_watcher
    # The watcher records itself as the lock's holder; this process leaves once it has.
    i=0
    while ! grep -q '^kind=window$' "$state_dir/lock/info" 2>/dev/null && [ "$i" -lt 50 ]; do
      sleep 0.1
      i=$((i + 1))
    done
    locked=0
    printf '{"ok":true,"command":"activate","result":"awaiting-confirmation","token":%s,"confirmTimeout":%s,' \
      "$(json_str "$token")" "$confirm_timeout"
    activated_json
    exit 0
  fi
  # The system runs, healthy: no longer a failed one (boot and dry-activate change nothing now).
  case $action in switch | test) rm -f "$state_dir/failed" ;; esac
  unlock
  printf '{"ok":true,"command":"activate","result":"activated",'
  activated_json
  exit 0
}

# The watcher left behind for magic rollback: waits for confirm or abort, else rolls back.
watcher_script() {
  cat <<'WATCH'
dir=$1 token=$2 timeout=$3 profile=$4 prev_gen=$5 prev_system=$6 action=$7 info=$8
settle=$9 rollback_timeout=${10} kill_grace=${11}
outcome=rolled-back reason="no confirmation within ${timeout}s"
# This process holds the lock now, until the window closes and a rollback would have ended; it
# records itself as activate.sh does (pid, start time, deadline, what it runs).
read -r stat <"/proc/$$/stat"
set -- ${stat##*) }
start=${20}
deadline=$(($(date +%s) + timeout + settle))
phase=confirm
record() {
  printf '%s\npid=%s\nstart=%s\nkind=window\ncommand=confirmation window %s\nphase=%s\ndeadline=%s\ngroup=%s\ngroup_start=%s\n' \
    "$info" "$$" "$start" "$token" "$phase" "$deadline" "${1-}" "${2-}" >"$dir/lock/info.$$" &&
    mv -f "$dir/lock/info.$$" "$dir/lock/info"
}
record
# Sleep through the window unless woken: confirm and abort write their flag, then kill the
# sleeper. The pid file is written before the flags are checked, so a flag written before
# the wait is seen, and one written after it finds the sleeper to kill. No polling.
sleep "$timeout" &
sleeper=$!
printf '%s\n' "$sleeper" >"$dir/sleeper-$token"
if [ ! -e "$dir/confirmed-$token" ] && [ ! -e "$dir/abort-$token" ]; then
  wait "$sleeper"
fi
kill "$sleeper" 2>/dev/null
if [ -e "$dir/confirmed-$token" ]; then
  outcome=confirmed reason="confirmed within ${timeout}s"
elif [ -e "$dir/abort-$token" ]; then
  reason="aborted by the deployer"
fi
if [ "$outcome" = rolled-back ]; then
  ok=true
  phase=rollback
  record
  if [ -n "$prev_system" ]; then
    if [ "$action" = switch ] && [ -n "$prev_gen" ]; then
      # The generation this activation made goes: no rollback or boot menu may take it.
      failed_gen=$(readlink "$profile" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p')
      if nix-env -p "$profile" --switch-generation "$prev_gen"; then
        [ -z "$failed_gen" ] || [ "$failed_gen" = "$prev_gen" ] ||
          nix-env -p "$profile" --delete-generations "$failed_gen" || true
      else
        ok=false
      fi
    fi
    # Bounded, in its own process group (recorded, for a takeover to stop).
    timeout -k "$kill_grace" "$rollback_timeout" "$prev_system/bin/switch-to-configuration" "$action" &
    group=$!
    read -r stat <"/proc/$group/stat"
    set -- ${stat##*) }
    record "$group" "${20}"
    wait "$group" || ok=false
  else
    ok=false
    reason="$reason; no earlier system to go back to: the host runs $(printf '%s\n' "$info" | sed -n 's/^path=//p'), marked failed until an activation succeeds"
  fi
  [ "$ok" = true ] || outcome=rollback-failed
fi
# A confirmed system is no failed one; one that could not be left is (see mark_failed).
w_path=$(printf '%s\n' "$info" | sed -n 's/^path=//p')
if [ "$outcome" = confirmed ]; then
  rm -f "$dir/failed"
elif [ "$outcome" = rollback-failed ] && [ -n "$w_path" ]; then
  printf 'path=%s\nsince=%s\nreason=%s\n' "$w_path" "$(date +%s)" \
    "$(printf '%s\n' "$reason" | head -n 1 | head -c 500)" >"$dir/failed.tmp" &&
    mv -f "$dir/failed.tmp" "$dir/failed"
fi
# The lock goes (unless a takeover made it another's), then the outcome is told.
if [ "$(sed -n 's/^pid=//p' "$dir/lock/info" 2>/dev/null)" = "$$" ]; then rm -rf "$dir/lock"; fi
printf '%s\n%s\n' "$outcome" "$reason" >"$dir/result-$token.tmp"
mv "$dir/result-$token.tmp" "$dir/result-$token"
rm -f "$dir/pending-$token" "$dir/confirmed-$token" "$dir/abort-$token" "$dir/sleeper-$token"
WATCH
}

start_watcher() {
  printf '%s\n' "$path" >"$state_dir/pending-$token"
  w_info=$(printf 'since=%s\npath=%s\naction=%s\ntoken=%s\nprofile=%s\nprev_gen=%s\nprev_system=%s' \
    "$l_since" "$path" "$action" "$token" "$profile" "$prev_gen" "$prev_system")
  if have_systemd; then
    systemd-run --collect --no-ask-password --quiet --unit="nixship-confirm-$token" \
      sh -c "$(watcher_script)" watcher "$state_dir" "$token" "$confirm_timeout" "$profile" \
      "$prev_gen" "$prev_system" "$action" "$w_info" "$SETTLE_TIME" "$ROLLBACK_TIMEOUT" \
      "$KILL_GRACE" >&2
  else
    (
      trap - INT TERM
      exec setsid sh -c "$(watcher_script)" watcher "$state_dir" "$token" "$confirm_timeout" \
        "$profile" "$prev_gen" "$prev_system" "$action" "$w_info" "$SETTLE_TIME" \
        "$ROLLBACK_TIMEOUT" "$KILL_GRACE"
    ) </dev/null >>"$state_dir/watch-$token.log" 2>&1 &
  fi
}

# --- Secrets (see the header): step 2, after realise and before the profile.

# Removes what an unfinished secrets step wrote: the files decrypted beside their PATHs (each
# listed before it is made) and the work directory.
secrets_discard() {
  [ -d "$secrets_work" ] || return 0
  if [ -f "$secrets_work/temps" ]; then
    while IFS= read -r s_temp; do
      case $s_temp in /run/*/.nixship-*.new | /run/.nixship-*.new) rm -f "$s_temp" ;; esac
    done <"$secrets_work/temps"
  fi
  rm -rf "$secrets_work"
}

# A malformed bundle is the deployer's bug: exit 2, naming the line but never its content.

# The host's pinned trust (see "pinned trust" above): pinned=1 and pinned_subs, pinned_keys
# from $NIXSHIP_TRUST_FILE, or pinned=0 without it. A file that is not root's alone, or holds
# anything but those lines, or no key, is refused: the host then trusts nothing.
pinned=0 pinned_subs="" pinned_keys=""
load_pinned_trust() {
  [ -n "${NIXSHIP_TRUST_FILE-}" ] || return 0
  p_file=$NIXSHIP_TRUST_FILE
  if [ ! -f "$p_file" ] || [ -L "$p_file" ]; then
    usage "pinned trust: $p_file is not a file; the host's nixship module writes it"
  fi
  root_only_dir "$p_file" ||
    usage "pinned trust: $p_file must be owned by root and writable by root alone"
  p_line=0
  while IFS= read -r p_text || [ -n "$p_text" ]; do
    p_line=$((p_line + 1))
    set -f
    # shellcheck disable=SC2086 # split into words on purpose
    set -- $p_text
    set +f
    case ${1-} in
      '' | '#'*) ;;
      substituter)
        [ $# = 2 ] || usage "pinned trust: $p_file line $p_line: expected 'substituter URL'"
        pinned_subs="$pinned_subs${pinned_subs:+ }$2" ;;
      trusted-key)
        [ $# = 2 ] || usage "pinned trust: $p_file line $p_line: expected 'trusted-key NAME:KEY'"
        case $2 in ?*:?*) ;; *) usage "pinned trust: $p_file line $p_line: a key is NAME:KEY" ;; esac
        pinned_keys="$pinned_keys${pinned_keys:+ }$2" ;;
      *) usage "pinned trust: $p_file line $p_line: expected 'substituter URL' or 'trusted-key NAME:KEY'" ;;
    esac
  done <"$p_file"
  [ -n "$pinned_keys" ] || usage "pinned trust: $p_file names no trusted-key"
  pinned=1
}

# Refuses option $1 of a pinned activation: it would let the caller choose what root runs or
# writes.
refuse_when_pinned() {
  [ "$pinned" = 0 ] ||
    usage "$1 is refused: this host's trust is pinned ($NIXSHIP_TRUST_FILE), and $2"
}

# With pinned trust, store path $1 ($2 says what it is) and its closure must carry a signature
# by a pinned key, whether it was just substituted or was in the store already (a path a user
# built or copied in unsigned is not one nixship's signer made); fails phase $3 with exit $4.
require_pinned_signature() {
  if unsigned_by_pins "$1" "$2"; then step_failed "$3" "$4" "$p_why"; fi
}

# With pinned trust, whether store path $1 ($2 says what it is) lacks a pinned key's signature
# on itself or its closure, within what is left of the deadline; why is in p_why. Nix counts a
# content-addressed path as signed whatever its signatures (its content is its name), and any
# user may add one (nix-store --add): so $1 itself must not be one. Its references may be: the
# signature on $1 covers which paths it refers to.
unsigned_by_pins() {
  [ "$pinned" = 1 ] || return 1
  p_why="no time was left to check that $2$1 is signed by a key this host pins"
  r=$(remaining)
  [ "$r" -gt 0 ] || return 0
  if ! bounded "$state_dir/path-info" "$r" nix --extra-experimental-features nix-command \
    path-info --json "$1"; then
    p_why="cannot read what the store says of $2$1"
    return 0
  fi
  p_info=$(head -c 65536 "$state_dir/path-info")
  rm -f "$state_dir/path-info"
  case $p_info in
    *'"ca":"'*)
      p_why="$2$1 is not signed by a key this host pins: it is content-addressed, which anyone may add to the store"
      return 0 ;;
  esac
  r=$(remaining)
  [ "$r" -gt 0 ] || return 0
  p_why="$2$1 is not signed by a key this host pins (its closure must be)"
  ! bounded quiet "$r" nix --extra-experimental-features nix-command store verify --recursive \
    --no-contents --sigs-needed 1 --option trusted-public-keys "$pinned_keys" "$1"
}

# With pinned trust, the first command check of $health_cmds that system $1 does not declare
# itself (a line of $1/nixship/health-commands, which the system's signature covers), printed;
# fails when there is none: a caller chooses which of them run, never what runs as root.
undeclared_check() {
  [ "$pinned" = 1 ] && [ -n "$health_cmds" ] || return 1
  u_file=$1/nixship/health-commands
  u_old_ifs=$IFS
  set -f
  IFS='
'
  for u_check in $health_cmds; do
    u_check=${u_check#?}
    if [ ! -f "$u_file" ] || ! head -c 65536 "$u_file" | grep -Fxq -e "$u_check"; then
      IFS=$u_old_ifs
      set +f
      printf '%s' "$u_check"
      return 0
    fi
  done
  IFS=$u_old_ifs
  set +f
  return 1
}

# Whether directory $1 is root's alone: root owns it, and neither its group nor others may write.
# (A link is judged by what it leads to with stat -L: the link itself can only be replaced by
# whoever may write the directory that holds it.)
root_only_dir() {
  [ "$(stat -L -c %u "$1" 2>/dev/null)" = 0 ] || return 1
  case $(stat -L -c %a "$1" 2>/dev/null) in
    '' | *[2367]? | *[2367]) return 1 ;;
  esac
}

# Whether every directory on the way to directory $1 (under /run), as written and as resolved,
# is root's alone; with $2 = create, a missing one is made (by root, 0755, inside one that is).
# Sets d_real to where $1 resolves, or d_why to the first directory that fails, named.
root_only_path() {
  d_why="" d_at=""
  d_rest=${1#/}
  while [ -n "$d_rest" ]; do
    d_at="$d_at/${d_rest%%/*}"
    case $d_rest in */*) d_rest=${d_rest#*/} ;; *) d_rest="" ;; esac
    if [ ! -e "$d_at" ] && [ "${2-}" = create ]; then
      mkdir "$d_at" 2>/dev/null || { d_why="cannot create the directory $d_at"; return 1; }
    fi
    if [ ! -d "$d_at" ]; then
      d_why="$d_at is not a directory"
      return 1
    fi
    if ! root_only_dir "$d_at"; then
      d_why=$(users_may_change "$d_at" "$1")
      return 1
    fi
  done
  d_real=$(readlink -f "$1") || { d_why="cannot resolve $1"; return 1; }
  case $d_real/ in
    /run/?*) ;;
    *) d_why="$1 resolves to $d_real, which is not under /run"; return 1 ;;
  esac
  d_up=$d_real
  while [ -n "$d_up" ]; do
    if ! root_only_dir "$d_up"; then
      d_why=$(users_may_change "$d_up" "$d_real")
      return 1
    fi
    d_up=${d_up%/*}
  done
}

# The words for directory $1, on the way to $2, that users other than root can change.
users_may_change() {
  if [ "$1" = "$2" ]; then
    printf '%s can be changed by users other than root: make it root'"'"'s alone (e.g. 0750 root:GROUP for a service to read), or put the secret in such a directory' "$1"
  else
    printf '%s, above %s, can be changed by users other than root' "$1" "$2"
  fi
}
bundle_bad() { fail secrets 2 "secrets bundle: $1"; }

bundle_large() { fail secrets 11 "secrets bundle: larger than $MAX_SECRETS_BUNDLE bytes"; }

# Secret $1 cannot be installed because $2.
secret_failed() { step_failed secrets 11 "secret $1: $2"; }

# Fetches the bundle from --secrets-url within SECRETS_TIMEOUT seconds (and what is left of the
# activation timeout), keeping at most one byte past MAX_SECRETS_BUNDLE, enough to refuse it.
# The URL may carry credentials (a presigned URL): it is never logged.
fetch_bundle() {
  command -v curl >/dev/null 2>&1 ||
    fail secrets 11 "curl not found on the host: it fetches the secrets bundle"
  r=$(remaining)
  [ "$r" -gt 0 ] || timed_out secrets
  [ "$r" -le "$SECRETS_TIMEOUT" ] || r=$SECRETS_TIMEOUT
  log "fetching the secrets bundle"
  # shellcheck disable=SC2016 # expanded by that sh, from its arguments
  # (The quoted script stays on one line: the SSM document drops indentation.)
  f_script='{ curl -fsS --proto =http,https --max-time "$1" --max-filesize "$2" "$3" || echo "$?" >"$4.failed"; } | head -c "$(($2 + 1))" >"$4"'
  bounded log "$r" sh -c "$f_script" fetch "$r" "$MAX_SECRETS_BUNDLE" \
    "$secrets_url" "$secrets_work/bundle"
  f_status=$?
  f_curl=$(cat "$secrets_work/bundle.failed" 2>/dev/null)
  # (curl exits 63 for a size it was told in advance, 28 past --max-time.)
  if [ "$(($(wc -c <"$secrets_work/bundle")))" -gt "$MAX_SECRETS_BUNDLE" ] || [ "$f_curl" = 63 ]; then
    bundle_large
  fi
  case $f_status/$f_curl in
    0/) ;;
    124/* | 137/* | */28) step_failed secrets 11 "secrets bundle: fetching it took longer than ${r}s" ;;
    *) step_failed secrets 11 "secrets bundle: cannot fetch it (curl exit ${f_curl:-$f_status})" ;;
  esac
  f_sha=$(sha256sum <"$secrets_work/bundle" | cut -c1-64)
  [ "$f_sha" = "$secrets_sha256" ] ||
    fail secrets 11 "secrets bundle: the one fetched has sha256 $f_sha, not $secrets_sha256"
}

# Refuses a bundle that breaks the format before anything is done, and writes its manifest
# (each line without BASE64) to $secrets_work/manifest.
check_bundle() {
  c_bundle=$secrets_work/bundle
  [ "$(head -n 1 "$c_bundle")" = "nixship-secrets 1" ] ||
    bundle_bad "line 1 is not \"nixship-secrets 1\""
  [ -z "$(tail -c 1 "$c_bundle")" ] || bundle_bad "its last line does not end with a newline"
  # NAME OWNER GROUP MODE PATH SHA256 BASE64, one space apart (lengths and ".." below).
  c_account='([a-z_][a-z0-9_-]*[$]?|[0-9]+)'
  c_line="[A-Za-z0-9][A-Za-z0-9_.-]* $c_account $c_account [0-7]{4}"
  c_line="$c_line /run(/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)+ [0-9a-f]{64} [A-Za-z0-9+/]+={0,2}"
  # (sed, not head, reads to the end: nothing upstream writes to a closed pipe.)
  c_bad=$(tail -n +2 "$c_bundle" | LC_ALL=C grep -n -v -E "^$c_line\$" | cut -d: -f1 | sed -n 1p)
  [ -z "$c_bad" ] || bundle_bad "line $((c_bad + 1)) is malformed"
  tail -n +2 "$c_bundle" | cut -d' ' -f1-6 >"$secrets_work/manifest" ||
    step_failed secrets 11 "cannot write $secrets_work/manifest"
  c_n=1
  while read -r c_name c_owner c_group _ c_path _ <&3; do
    c_n=$((c_n + 1))
    if [ ${#c_name} -gt 64 ] || [ ${#c_owner} -gt 32 ] || [ ${#c_group} -gt 32 ] ||
      [ ${#c_path} -gt 255 ]; then
      bundle_bad "line $c_n: a field is too long"
    fi
    case $c_name in *..*) bundle_bad "line $c_n: NAME holds \"..\"" ;; esac
  done 3<"$secrets_work/manifest"
  c_dup=$(awk 'names[$1]++ || paths[$5]++ { print NR + 1; exit }' "$secrets_work/manifest")
  [ -z "$c_dup" ] || bundle_bad "line $c_dup: its NAME or PATH is another secret's too"
}

# With pinned trust, every secret of the manifest must be one the system $path declares itself:
# its "NAME OWNER GROUP MODE PATH" a line of $path/nixship/secrets, which its signature covers.
# The caller chooses a secret's content, never where it goes or whose it is.
require_declared_secrets() {
  [ "$pinned" = 1 ] || return 0
  d_file=$path/nixship/secrets
  d_n=1
  while read -r d_name d_owner d_group d_mode d_path _ <&3; do
    d_n=$((d_n + 1))
    if [ ! -f "$d_file" ] ||
      ! head -c 65536 "$d_file" | grep -Fxq -e "$d_name $d_owner $d_group $d_mode $d_path"; then
      fail secrets 11 "secrets bundle line $d_n (secret $d_name): the system does not declare it so in $d_file (name, owner, group, mode and path must be one of its lines): this host's trust is pinned, and only its system says where secrets go and whose they are"
    fi
  done 3<"$secrets_work/manifest"
}

# The age to decrypt with: --age's bin/age (realised as the system is, within what is left of
# the activation timeout), else age from PATH.
# Realises store path $1 ($2 says what it is, e.g. "the age package "), failing phase $3 with
# exit code $4, under the GC root $5: from the substituters (after substituter $6, when given:
# the delta step's local cache) with only the trusted keys and signatures required, bounded by
# what is left of the activation timeout; without substituters it must be on the host already.
realise_path() {
  if [ -n "$subs" ]; then
    mark_phase "$3"
    log "realising $2$1 from $subs"
    r=$(remaining)
    [ "$r" -gt 0 ] || timed_out "$3"
    bounded quiet "$r" nix-store --realise "$1" --add-root "$5" \
      --option substituters "${6:+$6 }$subs" --option trusted-public-keys "$keys" \
      --option require-sigs true --option narinfo-cache-negative-ttl 0 ||
      step_failed "$3" "$4" "$(realise_failure "$1" "$2")"
  elif ! nix-store --check-validity "$1" 2>/dev/null; then
    fail "$3" "$4" "$2$1 is not on this host, and no substituter was given"
  fi
}

# Why realising $2$1 from $subs failed: a substituter that cannot be reached is named (curl asks
# each http(s) one for its nix-cache-info, within 5 s); else the path is not there, or not signed
# by a trusted key.
realise_failure() {
  if command -v curl >/dev/null 2>&1; then
    for u_sub in $subs; do
      case $u_sub in http://* | https://*) ;; *) continue ;; esac
      u_err=$(curl -sS -o /dev/null --max-time 5 "${u_sub%/}/nix-cache-info" 2>&1) && continue
      printf 'cannot realise %s%s: the substituter %s cannot be reached (%s)' "$2" "$1" "$u_sub" \
        "$(printf '%s' "$u_err" | head -n 1)"
      return 0
    done
  fi
  printf 'cannot realise %s%s from %s: not there, or not signed by a trusted key' "$2" "$1" "$subs"
}

find_age() {
  if [ -z "$age_path" ]; then
    age=$(command -v age) ||
      fail secrets 11 "age not found on the host: add it to the system or set secrets.age in the fleet"
    return 0
  fi
  realise_path "$age_path" "the age package " secrets 11 "$state_dir/realised-age"
  store_path_resolves "$age_path" ||
    fail secrets 11 "the age package $age_path is a link or resolves elsewhere: only a store path that is itself is run"
  require_pinned_signature "$age_path" "the age package " secrets 11
  age=$age_path/bin/age
  [ -x "$age" ] || fail secrets 11 "the age package $age_path has no bin/age"
}

user_exists() { digits "$1" || id -u "$1" >/dev/null 2>&1; }

group_exists() {
  digits "$1" || getent group "$1" >/dev/null 2>&1 ||
    awk -F: -v g="$1" '$1 == g { found = 1 } END { exit !found }' /etc/group 2>/dev/null
}

# Decrypts the secret of line s_n (s_name ... s_sha) into .nixship-NAME.new beside its PATH,
# with its owner, group and mode, or fails naming it. age's stdout is never shown.
decrypt_secret() {
  s_age=$secrets_work/$s_n.age
  base64 -d <"$secrets_work/$s_n.b64" >"$s_age" 2>/dev/null ||
    bundle_bad "line $s_n: BASE64 does not decode"
  rm -f "$secrets_work/$s_n.b64"
  [ "$(sha256sum <"$s_age" | cut -c1-64)" = "$s_sha" ] ||
    secret_failed "$s_name" "its age file does not match its sha256"
  user_exists "$s_owner" || secret_failed "$s_name" "owner '$s_owner' does not exist on this host"
  group_exists "$s_group" || secret_failed "$s_name" "group '$s_group' does not exist on this host"
  case $s_path/ in "$state_dir"/*) secret_failed "$s_name" "$s_path is in nixship's $state_dir" ;; esac
  [ ! -d "$s_path" ] || secret_failed "$s_name" "$s_path is a directory"
  s_dir=${s_path%/*}
  # Every directory on the way, as written and as resolved, root's alone (missing ones made so):
  # then nobody but root can swap one for a link while the secret is written, moved or removed.
  root_only_path "$s_dir" create || secret_failed "$s_name" "$d_why"
  s_real=$d_real
  s_fs=$(stat -f -c %T "$s_real" 2>/dev/null)
  case $s_fs in
    tmpfs | ramfs) ;;
    *) secret_failed "$s_name" "$s_dir is not on a tmpfs (it is on ${s_fs:-an unknown file system})" ;;
  esac
  s_temp=$s_real/.nixship-$s_name.new
  printf '%s\n' "$s_temp" >>"$secrets_work/temps"
  printf '%s\n' "$s_real" >"$secrets_work/dir-$s_n"
  rm -f "$s_temp"
  r=$(remaining)
  [ "$r" -gt 0 ] || timed_out secrets
  [ "$r" -le "$SECRETS_TIMEOUT" ] || r=$SECRETS_TIMEOUT
  # The file age makes is its owner's only until chown and chmod.
  umask 077
  bounded quiet "$r" "$age" -d -i "$host_key" -o "$s_temp" "$s_age"
  s_status=$?
  umask 022
  case $s_status in
    0) ;;
    124 | 137) secret_failed "$s_name" "decrypting it took longer than ${r}s" ;;
    *) secret_failed "$s_name" "cannot be decrypted with $host_key (not encrypted to this host, or tampered)" ;;
  esac
  chown "$s_owner:$s_group" "$s_temp" ||
    secret_failed "$s_name" "cannot give it owner $s_owner and group $s_group"
  chmod "$s_mode" "$s_temp" || secret_failed "$s_name" "cannot give it mode $s_mode"
}

# Removes secret file $1 of an earlier bundle, following no link: only where every directory on
# its way is root's alone (else it is left, and said), by its name within that directory.
remove_secret() {
  if ! root_only_path "${1%/*}"; then
    log "left $1, which an earlier bundle installed: $d_why"
    return 0
  fi
  (cd "$d_real" && [ "$(pwd -P)" = "$d_real" ] && exec rm -f -- "${1##*/}") ||
    log "could not remove $1, which an earlier bundle installed"
}

# Once all are decrypted: each replaces its PATH (a rename within its directory), the PATHs of
# the previous manifest that this one lacks go, and this manifest is recorded. Not interrupted.
commit_secrets() {
  trap '' INT TERM
  s_n=1
  while read -r s_name _ _ _ s_path _ <&3; do
    s_n=$((s_n + 1))
    # Within the directory checked (entered once, and still where it was resolved): a rename
    # there replaces the name without following it; -T refuses a directory planted at it.
    s_real=$(cat "$secrets_work/dir-$s_n")
    (cd "$s_real" && [ "$(pwd -P)" = "$s_real" ] && exec mv -fT ".nixship-$s_name.new" "${s_path##*/}") ||
      secret_failed "$s_name" "cannot be moved to $s_path"
  done 3<"$secrets_work/manifest"
  if [ -f "$state_dir/secrets" ]; then
    cut -d' ' -f5 "$secrets_work/manifest" >"$secrets_work/paths"
    while read -r _ _ _ _ s_path _ <&3; do
      case $s_path in /run/?*) grep -q -x -F -e "$s_path" "$secrets_work/paths" || remove_secret "$s_path" ;; esac
    done 3<"$state_dir/secrets"
  fi
  mv -f "$secrets_work/manifest" "$state_dir/secrets"
  rm -rf "$secrets_work"
  log "installed $s_what"
  trap 'interrupted INT' INT
  trap 'interrupted TERM' TERM
}

install_secrets() {
  l_phase=secrets
  mark_phase secrets
  write_info
  secrets_discard
  { mkdir -p "$state_dir" && mkdir -m 700 "$secrets_work"; } ||
    step_failed secrets 11 "cannot create $secrets_work"
  if [ -n "$secrets_url" ]; then
    fetch_bundle
  elif [ "$pinned" = 1 ] && [ -z "${NIXSHIP_SECRETS+set}" ]; then
    # A pinned script is started by its wrapper, not piped: the bundle comes on its input.
    head -c "$((MAX_SECRETS_BUNDLE + 1))" >"$secrets_work/bundle" ||
      step_failed secrets 11 "cannot write $secrets_work/bundle"
    [ "$(($(wc -c <"$secrets_work/bundle")))" -le "$MAX_SECRETS_BUNDLE" ] || bundle_large
  else
    printf '%s' "$NIXSHIP_SECRETS" >"$secrets_work/bundle" ||
      step_failed secrets 11 "cannot write $secrets_work/bundle"
    [ "$(($(wc -c <"$secrets_work/bundle")))" -le "$MAX_SECRETS_BUNDLE" ] || bundle_large
  fi
  check_bundle
  require_declared_secrets
  s_count=$(($(wc -l <"$secrets_work/manifest")))
  s_what="$s_count secrets"
  [ "$s_count" != 1 ] || s_what="1 secret"
  if [ "$s_count" = 0 ]; then
    log "installing $s_what"
  else
    find_age
    [ -r "$host_key" ] || step_failed secrets 11 "cannot read the host key $host_key"
    log "installing $s_what (age: $age, key: $host_key)"
    # Each line's BASE64 into a file of its own, in one pass over the bundle.
    awk -v dir="$secrets_work" 'NR > 1 { f = dir "/" NR ".b64"; print $7 >f; close(f) }' \
      "$secrets_work/bundle" || step_failed secrets 11 "cannot split the secrets bundle"
    s_n=1
    while read -r s_name s_owner s_group s_mode s_path s_sha <&3; do
      s_n=$((s_n + 1))
      decrypt_secret
    done 3<"$secrets_work/manifest"
  fi
  commit_secrets
}

# --secrets and the options that go with it.
check_secrets_options() {
  if [ "$secrets" = 0 ]; then
    [ -z "$age_path$host_key$secrets_url$secrets_sha256" ] ||
      usage "activate: --age, --host-key, --secrets-url and --secrets-sha256 go with --secrets"
    return 0
  fi
  [ -z "$age_path" ] || store_path_form "$age_path" ||
    usage "activate: --age must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$age_path'"
  [ -z "$host_key" ] || [ "$host_key" = /etc/ssh/ssh_host_ed25519_key ] ||
    refuse_when_pinned --host-key "secrets are decrypted with the host's own key"
  host_key=${host_key:-/etc/ssh/ssh_host_ed25519_key}
  case $host_key in /?*) ;; *) usage "activate: --host-key must be an absolute path" ;; esac
  if [ -n "$secrets_url$secrets_sha256" ]; then
    case $secrets_url in http://?* | https://?*) ;; *) usage "activate: --secrets-url must be an http or https URL" ;; esac
    case $secrets_sha256 in *[!0-9a-f]* | '') secrets_sha256=bad ;; esac
    [ ${#secrets_sha256} = 64 ] ||
      usage "activate: --secrets-url needs --secrets-sha256, the bundle's sha256 in lowercase hex"
  elif [ -z "${NIXSHIP_SECRETS+set}" ] && [ "$pinned" = 0 ]; then
    usage "activate: --secrets needs the bundle in NIXSHIP_SECRETS (set before the script in its input) or --secrets-url"
  fi
}


# --- Deltas (activate --delta-tool P; docs/deltas.md). Before the system is realised, the paths
# it lacks are rebuilt where they can be from deltas against paths of the running system's
# closure, into a binary cache on local disk that the realise asks first (Priority 1): Nix then
# checks each rebuilt path's signature and NAR hash itself, and takes whatever the deltas did
# not give from the substituters. The step never fails an activation: what it cannot do comes
# whole.

# The most paths the step looks for deltas of, and the bases it tries for each (paths of the
# same package name in the running system's closure): past these, paths come whole. The step
# takes at most half of what is left of the activation timeout, the rest is the realise's.
DELTA_MAX_PATHS=2000 DELTA_MAX_BASES=3
# Where the step works: on the store's disk (NARs can be large, /run is a tmpfs), one activation
# at a time (the lock), removed when the step's realise is over and on every failure.
DELTA_WORK=/nix/var/nixship/delta-work
# Seconds the delta paths' removal from the store may take (it waits for a garbage collection
# under way): short, since a failed activation's end (SETTLE_TIME) waits for it too.
DELTA_DELETE_TIME=10
# The largest delta-info and narinfo read (a narinfo lists its references: 64 KiB is thousands).
DELTA_INFO_LIMIT=4096 DELTA_NARINFO_LIMIT=65536
x_dir="" x_cache="" x_json=""

# Seconds the delta step may still take.
x_left() {
  r=$((x_deadline - $(now)))
  [ "$r" -gt 0 ] || r=0
  printf '%s' "$r"
}

# Removes what the delta step wrote (also an earlier, killed activation's): the delta paths it
# fetched into the store (each run's "picked" lists those it asked for; nothing roots them),
# then its work directory. Called on every way out of the step: its end (delta_finish), a skip,
# every failure of the activation (finish_failed), and the start of the next step.
delta_discard() {
  d_paths=$(cat "$DELTA_WORK"/*/picked 2>/dev/null | cut -d ' ' -f 1 |
    LC_ALL=C grep -x -E -e "$STORE_PATH_RE" | LC_ALL=C grep -e '^/nix/store/[^/-]*-nixship-delta-' |
    while read -r d_p; do [ ! -e "$d_p" ] || printf '%s\n' "$d_p"; done)
  if [ -n "$d_paths" ]; then
    set -f
    # shellcheck disable=SC2086 # one store path a word
    set -- $d_paths
    set +f
    timeout -k "$KILL_GRACE" "$DELTA_DELETE_TIME" nix-store --delete "$@" >/dev/null 2>&1 ||
      log "deltas: could not remove the delta paths from the store (the garbage collector will)"
  fi
  rm -rf "$DELTA_WORK"
  x_dir="" x_cache=""
}

# The step did not run although asked to ($1 says why): logged and reported, the paths come whole.
delta_skip() {
  log "deltas: not used: $1"
  x_json=$(printf '{"skipped":%s}' "$(json_str "$1")")
  delta_discard
}

# Realises the delta tool (--delta-tool) from the substituters as the age package is (signatures
# required; with pinned trust, signed by a pinned key), or says why not in x_why.
delta_tool_ready() {
  x_why="no time was left to realise the delta tool $delta_tool"
  r=$(x_left)
  [ "$r" -gt 0 ] || return 1
  log "realising the delta tool $delta_tool from $subs"
  if ! bounded quiet "$r" nix-store --realise "$delta_tool" --add-root "$state_dir/realised-delta-tool" \
    --option substituters "$subs" --option trusted-public-keys "$keys" \
    --option require-sigs true --option narinfo-cache-negative-ttl 0; then
    x_why="cannot realise the delta tool $delta_tool from $subs: not there, or not signed by a trusted key"
    return 1
  fi
  x_why="the delta tool $delta_tool is a link or resolves elsewhere: only a store path that is itself is run"
  store_path_resolves "$delta_tool" || return 1
  if unsigned_by_pins "$delta_tool" "the delta tool "; then
    x_why=$p_why
    return 1
  fi
  x_why="the delta tool $delta_tool has no bin/zstd"
  [ -x "$delta_tool/bin/zstd" ]
}

# A pinned host's own zstd, printed: the one on the PATH its nixship-activate sets (the NixOS
# module puts zstd there), resolved into the store, so it came with the system the pinned keys
# signed. A pinned host applies deltas with it rather than realise a tool the deployer names.
pinned_zstd() {
  [ "$pinned" = 1 ] || return 1
  z_found=$(command -v zstd 2>/dev/null) || return 1
  z_found=$(resolve "$z_found") || return 1
  case $z_found in /nix/store/?*/bin/zstd) printf '%s\n' "$z_found" ;; *) return 1 ;; esac
}

# The store paths that `nix-store --realise --dry-run` (its output in file $1, Nix 2.8 or 2.26)
# says will be fetched, one a line.
fetched_paths() {
  awk '/will be fetched/ { f = 1; next } /^[^ ]/ { f = 0 } f { print $1 }' "$1" |
    LC_ALL=C grep -x -E -e "$STORE_PATH_RE" || true
}

# `nix-store --realise --dry-run` of the paths in file $1 from the substituters; what will be
# fetched into file $2. Fails when it could not be asked within the step's time (a path nothing
# has is only not listed).
dry_run_fetches() {
  r=$(x_left)
  [ "$r" -gt 0 ] || return 1
  set -f
  # shellcheck disable=SC2046 # one store path a word
  set -- "$2" $(cat "$1")
  set +f
  d_out=$1
  shift
  [ $# -gt 0 ] || { : >"$d_out"; return 0; }
  bounded "$x_dir/dry-run" "$r" sh -c 'exec "$@" 2>&1' sh nix-store --realise --dry-run "$@" \
    --option substituters "$subs" --option trusted-public-keys "$keys" \
    --option require-sigs true --option narinfo-cache-negative-ttl 0
  case $? in 124 | 137) return 1 ;; esac
  fetched_paths "$x_dir/dry-run" >"$d_out"
}

# The pairs to ask deltas for, "TARGET BASE" lines: for each path of file $1 (at most
# DELTA_MAX_PATHS), the paths of file $2 of its package name (parseDrvName's: up to the first
# "-" not followed by a letter), at most DELTA_MAX_BASES, in the deployer's order (deltaBasesOf
# in src/cache/delta-bases.ts): the same whole name first, then the version sharing the longest
# prefix with the target's, then the longest suffix, then by base name. (At most 200 paths of a
# name are weighed.)
delta_pairs() {
  LC_ALL=C awk -v max_paths="$DELTA_MAX_PATHS" -v max_bases="$DELTA_MAX_BASES" '
function dash(n) { return match(n, /-[^A-Za-z]/) }
function pname(n, i) { i = dash(n); return i ? substr(n, 1, i - 1) : n }
function pver(n, i) { i = dash(n); return i ? substr(n, i + 1) : "" }
function pre(a, b, k) { k = 0; while (k < length(a) && k < length(b) && substr(a, k + 1, 1) == substr(b, k + 1, 1)) k++; return k }
function suf(a, b, k, la, lb) { k = 0; la = length(a); lb = length(b); while (k < la && k < lb && substr(a, la - k, 1) == substr(b, lb - k, 1)) k++; return k }
function better(i, j) {
if (s1[i] != s1[j]) return s1[i] > s1[j]
if (s2[i] != s2[j]) return s2[i] > s2[j]
if (s3[i] != s3[j]) return s3[i] > s3[j]
return bn[i] < bn[j]
}
NR == FNR {
n = substr($0, 45); p = pname(n)
if (count[p] < 200) { count[p]++; path[p, count[p]] = $0; full[p, count[p]] = n; ver[p, count[p]] = pver(n) }
next
}
FNR <= max_paths {
n = substr($0, 45); p = pname(n); v = pver(n); m = count[p]
for (i = 1; i <= m; i++) {
used[i] = (path[p, i] == $0); s1[i] = (full[p, i] == n) ? 1 : 0
s2[i] = pre(ver[p, i], v); s3[i] = suf(ver[p, i], v); bn[i] = substr(path[p, i], 12)
}
for (k = 0; k < max_bases; k++) {
best = 0
for (i = 1; i <= m; i++) if (!used[i] && (!best || better(i, best))) best = i
if (!best) break
used[best] = 1
print $0, path[p, best]
}
}' "$2" "$1"
}

# The delta paths of the pairs in file $1 (docs/deltas.md: deltaHashPart), "DELTA TARGET BASE"
# lines into file $2: the hash part is the first 32 characters of the nix32 form of
# sha256("nixship-delta-v1:<target's base name>:<base's base name>").
delta_candidates() {
  c_pairs=$1 c_out=$2
  while read -r c_t c_b; do
    c_hex=$(printf 'nixship-delta-v1:%s:%s' "${c_t#/nix/store/}" "${c_b#/nix/store/}" | sha256sum)
    printf '%s\n' "${c_hex%% *}"
  done <"$c_pairs" >"$x_dir/seeds"
  r=$(x_left)
  [ "$r" -gt 0 ] || return 1
  set -f
  # shellcheck disable=SC2046 # one hash a word
  set -- $(cat "$x_dir/seeds")
  set +f
  [ $# -gt 0 ] || { : >"$c_out"; return 0; }
  bounded "$x_dir/nix32" "$r" nix-hash --type sha256 --to-base32 "$@" || return 1
  cut -c1-32 "$x_dir/nix32" | paste -d ' ' - "$c_pairs" |
    awk '{ print "/nix/store/" $1 "-nixship-delta-" substr($2, 12, 32), $2, $3 }' >"$c_out"
  [ "$(wc -l <"$c_out")" = "$(wc -l <"$c_pairs")" ]
}

# The deltas fetched in file $1 ("DELTA TARGET BASE" lines) whose delta-info names that pair
# and whose narinfo is the target's, each well formed, as "DELTA TARGET BASE BASEHASH BASESIZE
# HASH SIZE" lines into file $2 (hashes as sha256:<52 nix32 characters>); each other one is
# logged, with why, and listed in x_dir/failed. Reads only the deltas' small files.
delta_checked() {
  : >"$2"
  while read -r c_d c_t c_b; do
    x_why="the delta was not fetched"
    if [ -d "$c_d" ]; then
      x_why="its delta-info or narinfo is too large or missing"
      if [ -f "$c_d/delta-info" ] && [ -f "$c_d/narinfo" ] && [ -f "$c_d/delta.zst" ] &&
        [ "$(wc -c <"$c_d/delta-info")" -le "$DELTA_INFO_LIMIT" ] &&
        [ "$(wc -c <"$c_d/narinfo")" -le "$DELTA_NARINFO_LIMIT" ]; then
        x_why="its delta-info is not of this pair, or its narinfo not the target's, or malformed"
        if LC_ALL=C awk -v d="$c_d" -v t="$c_t" -v b="$c_b" '
function nix32(h) { return h ~ /^sha256:[0-9abcdfghijklmnpqrsvwxyz]+$/ && length(h) == 59 }
function size(n) { return n ~ /^[0-9]+$/ && length(n) <= 15 }
FNR == 1 { file++ }
file == 1 && $0 != "" { i = index($0, ": "); k = substr($0, 1, i - 1); if (i < 2 || (k in f)) bad = 1; f[k] = substr($0, i + 2); n++ }
file == 2 { i = index($0, ": "); if (i > 1) g[substr($0, 1, i - 1)] = substr($0, i + 2) }
END {
if (bad || n != 5 || f["Engine"] != "zstd-patch" || f["Target"] != t || f["Base"] != b ||
!nix32(f["BaseNarHash"]) || !size(f["BaseNarSize"]) || g["StorePath"] != t ||
!nix32(g["NarHash"]) || !size(g["NarSize"])) exit 1
print d, t, b, f["BaseNarHash"], f["BaseNarSize"], g["NarHash"], g["NarSize"]
}' "$c_d/delta-info" "$c_d/narinfo" >>"$2"; then
          continue
        fi
      fi
    fi
    log "deltas: $c_t comes whole: the delta from $c_b: $x_why"
    printf '%s\n' "$c_t" >>"$x_dir/failed"
  done <"$1"
}

# Rebuilds the NAR of each delta of file $1 (delta_checked's lines) into the local cache, or
# logs why not and lists its target in x_dir/failed: the base's NAR hash as this store records
# it must be BaseNarHash (else another base), its dump must be BaseNarSize bytes with that
# sha256 (else the store's copy changed), and the NAR zstd rebuilds (cut at NarSize + 1 bytes:
# a delta that expands without bound stops there) must have the narinfo's NarSize and NarHash.
# Its narinfo is the cache's, signed, with only URL, Compression, FileHash and FileSize changed
# (no signature covers them). The store and nix-hash are asked once for all the deltas; each
# NAR is hashed as it is written.
delta_rebuild() {
  [ -s "$1" ] || return 0
  r=$(x_left)
  x_why="no time was left to ask the store for the bases' hashes and convert the hashes"
  if [ "$r" -le 0 ] || ! delta_hashes "$1" "$x_dir/hashes" "$r"; then
    cut -d ' ' -f 2,3 "$1" | while read -r a_t a_b; do
      log "deltas: $a_t comes whole: the delta from $a_b: $x_why"
      printf '%s\n' "$a_t" >>"$x_dir/failed"
    done
    return 0
  fi
  while read -r a_d a_t a_b a_base_hash a_base_size a_hash a_size a_stored a_base_hex a_hex; do
    if delta_apply; then
      printf '%s\n' "$a_t" >>"$x_dir/applied"
    else
      log "deltas: $a_t comes whole: the delta from $a_b: $x_why"
      printf '%s\n' "$a_t" >>"$x_dir/failed"
      rm -f "$x_dir/nar" "$x_dir/base.nar"
    fi
  done <"$x_dir/hashes"
}

# To each line of file $1, the base's NAR hash as the store records it and the base's and the
# target's NAR hashes in hex, into file $2: one `nix-store -q --hash` and one `nix-hash` for all,
# within $3 seconds.
delta_hashes() {
  set -f
  # shellcheck disable=SC2046 # one store path a word
  set -- "$1" "$2" "$3" $(cut -d ' ' -f 3 "$1")
  set +f
  h_in=$1 h_out=$2 h_secs=$3
  shift 3
  bounded "$x_dir/stored" "$h_secs" nix-store -q --hash "$@" || return 1
  set -f
  # shellcheck disable=SC2046 # one hash a word
  set -- $(awk '{ print substr($4, 8); print substr($6, 8) }' "$h_in")
  set +f
  r=$(x_left)
  [ "$r" -gt 0 ] && bounded "$x_dir/hex" "$r" nix-hash --type sha256 --to-base16 "$@" || return 1
  [ "$(wc -l <"$x_dir/stored")" = "$(wc -l <"$h_in")" ] &&
    [ "$(wc -l <"$x_dir/hex")" = "$(($(wc -l <"$h_in") * 2))" ] || return 1
  paste -d ' ' - - <"$x_dir/hex" | paste -d ' ' "$h_in" "$x_dir/stored" - >"$h_out"
}

# Rebuilds one NAR (delta_rebuild's a_* fields), or says why not (x_why).
delta_apply() {
  x_why="the base's NAR hash in this store is not the delta's BaseNarHash (another base)"
  [ "$a_stored" = "$a_base_hash" ] || return 1
  x_why="no room: the rebuilt NARs would take more than half the free space of $DELTA_WORK"
  a_free=$(df -Pk "$DELTA_WORK" 2>/dev/null | awk 'NR == 2 { print $4 }')
  digits "$a_free" && [ $((x_room + a_size + a_base_size)) -le $((a_free * 512)) ] || return 1
  r=$(x_left)
  x_why="the base could not be dumped in time"
  # The dump, hashed as it is written (one that fails is short, or hashes otherwise).
  # shellcheck disable=SC2016 # expanded by that sh
  [ "$r" -gt 0 ] && bounded "$x_dir/base.sum" "$r" sh -c \
    'nix-store --dump "$1" | tee "$2" | sha256sum' sh "$a_b" "$x_dir/base.nar" ||
    return 1
  x_why="the base's NAR is not the delta's BaseNarHash and BaseNarSize (the store's copy changed)"
  [ "$(wc -c <"$x_dir/base.nar")" = "$a_base_size" ] || return 1
  [ "$(cut -d ' ' -f 1 "$x_dir/base.sum")" = "$a_base_hex" ] || return 1
  r=$(x_left)
  x_why="no time was left"
  [ "$r" -gt 0 ] || return 1
  # zstd's memory: its window, which covers the target, and the base it patches from.
  a_mem=$(((a_size + a_base_size) / 1048576 + 2))
  x_why="zstd could not apply it within ${r}s"
  # shellcheck disable=SC2016 # expanded by that sh
  bounded "$x_dir/nar.sum" "$r" sh -c \
    '"$1" -d -q -c --memory="$2MB" --patch-from="$3" "$4" | head -c "$5" | tee "$6" | sha256sum' \
    sh "$x_zstd" "$a_mem" "$x_dir/base.nar" "$a_d/delta.zst" "$((a_size + 1))" "$x_dir/nar"
  rm -f "$x_dir/base.nar"
  x_why="the NAR it gives is not the narinfo's NarSize"
  [ "$(wc -c <"$x_dir/nar")" = "$a_size" ] || return 1
  x_why="the NAR it gives is not the narinfo's NarHash"
  [ "$(cut -d ' ' -f 1 "$x_dir/nar.sum")" = "$a_hex" ] || return 1
  a_part=${a_t#/nix/store/}
  a_part=${a_part%%-*}
  mv -f "$x_dir/nar" "$x_dir/cache/nar/$a_part.nar" || return 1
  awk -v part="$a_part" -v hash="$a_hash" -v size="$a_size" '
/^(URL|Compression|FileHash|FileSize): / { next }
{ print }
END { print "URL: nar/" part ".nar"; print "Compression: none"; print "FileHash: " hash; print "FileSize: " size }
' "$a_d/narinfo" >"$x_dir/cache/$a_part.narinfo" || return 1
  x_room=$((x_room + a_size))
}

# The delta step, before the system $path is realised from $subs (see above): sets x_cache, the
# local cache for the realise to ask first when any path was rebuilt, and x_json. Never fails.
delta_step() {
  x_json="" x_cache=""
  [ -n "$delta_tool" ] || return 0
  delta_discard
  [ -n "$subs" ] || { delta_skip "no substituter was given: nothing is fetched"; return 0; }
  x_deadline=$(($(now) + $(remaining) / 2))
  if x_zstd=$(pinned_zstd); then
    log "deltas: applied with $x_zstd, of nixship-activate's closure"
  else
    delta_tool_ready || { delta_skip "$x_why"; return 0; }
    x_zstd=$delta_tool/bin/zstd
  fi
  x_room=0
  x_dir=$DELTA_WORK/$$
  mkdir -p "$x_dir/cache/nar" || { delta_skip "cannot make $x_dir"; return 0; }
  printf '%s\n' "$path" >"$x_dir/system"
  dry_run_fetches "$x_dir/system" "$x_dir/fetch" ||
    { delta_skip "could not list what $path needs fetched"; return 0; }
  x_current=$(resolve /run/current-system || true)
  : >"$x_dir/current"
  r=$(x_left)
  if [ -n "$x_current" ] && [ "$r" -gt 0 ]; then
    bounded "$x_dir/current" "$r" nix-store -qR "$x_current" || : >"$x_dir/current"
  fi
  delta_pairs "$x_dir/fetch" "$x_dir/current" >"$x_dir/pairs"
  delta_candidates "$x_dir/pairs" "$x_dir/candidates" ||
    { delta_skip "could not name the deltas to ask for in time"; return 0; }
  cut -d ' ' -f 1 "$x_dir/candidates" >"$x_dir/candidate-paths"
  dry_run_fetches "$x_dir/candidate-paths" "$x_dir/available" ||
    { delta_skip "could not ask the substituters for deltas in time"; return 0; }
  # One delta a target: the first of its bases' that the substituters have.
  awk 'NR == FNR { have[$1]; next } ($1 in have) && !($2 in got) { got[$2]; print }' \
    "$x_dir/available" "$x_dir/candidates" >"$x_dir/picked"
  set -f
  # shellcheck disable=SC2046 # one store path a word
  set -- $(cut -d ' ' -f 1 "$x_dir/picked")
  set +f
  r=$(x_left)
  if [ $# -gt 0 ] && [ "$r" -gt 0 ]; then
    log "deltas: fetching $# of them, for $(wc -l <"$x_dir/fetch") paths to fetch"
    bounded quiet "$r" nix-store --realise --keep-going "$@" \
      --option substituters "$subs" --option trusted-public-keys "$keys" \
      --option require-sigs true --option narinfo-cache-negative-ttl 0
  fi
  : >"$x_dir/applied"
  : >"$x_dir/failed"
  delta_checked "$x_dir/picked" "$x_dir/checked"
  delta_rebuild "$x_dir/checked"
  if [ -s "$x_dir/applied" ]; then
    printf 'StoreDir: /nix/store\nWantMassQuery: 0\nPriority: 1\n' >"$x_dir/cache/nix-cache-info"
    x_cache=file://$x_dir/cache
  fi
}

# The sum of the NAR sizes of the (valid) store paths in file $1, within $2 seconds.
nar_bytes() {
  set -f
  # shellcheck disable=SC2046 # one store path a word
  set -- "$1" "$2" $(cat "$1")
  set +f
  n_secs=$2
  shift 2
  [ $# -gt 0 ] || { printf 0; return 0; }
  [ "$n_secs" -gt 0 ] || return 1
  bounded "$x_dir/sizes" "$n_secs" nix-store -q --size "$@" || return 1
  awk '{ s += $1 } END { printf "%.0f", s }' "$x_dir/sizes"
}

# After the realise: what came by delta and what came whole (x_json, and a log line), then the
# local cache and the delta paths go (delta_discard).
delta_finish() {
  [ -n "$x_dir" ] && [ -d "$x_dir" ] || return 0
  r=$(remaining)
  [ "$r" -le 60 ] || r=60
  cut -d ' ' -f 1 "$x_dir/picked" | while read -r f_d; do
    [ ! -d "$f_d" ] || printf '%s\n' "$f_d"
  done >"$x_dir/deltas-fetched"
  LC_ALL=C sort -u "$x_dir/applied" >"$x_dir/applied-sorted"
  LC_ALL=C sort -u "$x_dir/fetch" | LC_ALL=C comm -23 - "$x_dir/applied-sorted" >"$x_dir/whole"
  f_paths=$(wc -l <"$x_dir/applied-sorted") f_whole=$(wc -l <"$x_dir/whole")
  f_failed=$(wc -l <"$x_dir/failed")
  f_bytes=$(nar_bytes "$x_dir/deltas-fetched" "$r") || f_bytes=""
  f_nar=$(nar_bytes "$x_dir/applied-sorted" "$r") || f_nar=""
  f_whole_bytes=$(nar_bytes "$x_dir/whole" "$r") || f_whole_bytes=""
  log "deltas: $f_paths paths came by delta (${f_bytes:-?} bytes of deltas for ${f_nar:-?} bytes of NAR), $f_whole whole (${f_whole_bytes:-?} bytes of NAR); $f_failed deltas fetched did not apply"
  x_json=$(printf '{"paths":%s,"bytes":%s,"narBytes":%s,"wholePaths":%s,"wholeNarBytes":%s,"failed":%s}' \
    "$f_paths" "$(json_num "$f_bytes")" "$(json_num "$f_nar")" "$f_whole" \
    "$(json_num "$f_whole_bytes")" "$f_failed")
  delta_discard
}

# The delta step's report in the activation's answer: ',"delta":{...}', or nothing.
delta_json() { [ -z "$x_json" ] || printf ',"delta":%s' "$x_json"; }
# One health check option ($1, its value $2) into health_cmds (each check one line, "r":
# retried until health_timeout, or "o": once, before it) or health_timeout.
health_option() {
  case $1 in
    --health-cmd) health_cmds="${health_cmds}r$2
" ;;
    --health-once) health_cmds="${health_cmds}o$2
" ;;
    --health-timeout) health_timeout=$2 ;;
  esac
}

# The health checks of $health_cmds (one per line, "r" retried until $health_timeout, or "o"
# once), then systemd's failed units: returns 1 with h_message saying why when one fails.
run_health_checks() {
  h_message=""
  if h_undeclared=$(undeclared_check "$1"); then
    h_message="the command check '$h_undeclared' is not one $1 declares in nixship/health-commands: this host's trust is pinned, and only its system's own commands run as root"
    return 1
  fi
  if [ -n "$health_cmds" ]; then
    # Each attempt's output (stdout and stderr together) is logged, and its last 4 KiB kept for
    # the message in h_dir, this activation's own directory (removed when it ends). The check
    # ($1) runs under sh -c as before; its exit code goes to $2/code, its output through tee to
    # the log and through a fifo to tail. The shells wait for the check even when the timeout
    # stops it (TERM), and tee and tail ignore TERM: they end with its output, which is kept.
    # (A shell's "Terminated" goes to the log, not with it.) The attempt succeeds when the check
    # exits 0.
    # shellcheck disable=SC2016 # expanded by that sh, from its arguments
    # (The quoted script stays on one line: the SSM document drops indentation.)
    h_run='rm -f "$2/out" "$2/code"; trap : TERM; (trap "" TERM; exec tail -c 4096 <"$2/fifo" >"$2/out") & t=$!; { trap : TERM; (exec sh -c "$1" 2>&1); echo "$?" >"$2/code"; } | (trap "" TERM; exec tee "$2/fifo"); wait "$t"; [ "$(cat "$2/code" 2>/dev/null)" = 0 ]'
    h_dir=$state_dir/health-$$
    rm -rf "$h_dir"
    if ! { mkdir -m 700 "$h_dir" && mkfifo "$h_dir/fifo"; }; then
      h_message="cannot create $h_dir"
      return 1
    fi
    old_ifs=$IFS
    IFS='
'
    for check in $health_cmds; do
      IFS=$old_ifs
      h_once=false
      case $check in o*) h_once=true ;; esac
      check=${check#?}
      log "health: $check"
      # Retried about every second until it passes or its timeout ends, as HTTP checks are:
      # a service that starts slowly is not rolled back for it. A check given with
      # --health-once (retry false) fails at its first failure.
      h_end=$(($(date +%s) + health_timeout)) h_left=$health_timeout h_tries=1
      until bounded log "$h_left" sh -c "$h_run" health "$check" "$h_dir"; do
        h_status=$?
        h_left=$((h_end - $(date +%s) - 1))
        if [ "$h_once" = true ] || [ "$h_left" -le 0 ]; then
          h_message=$(health_failure)
          IFS=$old_ifs
          return 1
        fi
        if aborted; then
          h_message=aborted
          IFS=$old_ifs
          return 1
        fi
        h_tries=$((h_tries + 1))
        sleep 1
      done
    done
    IFS=$old_ifs
    rm -rf "$h_dir"
    h_dir=""
  fi
  if have_systemd; then
    failed_units=$(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
    if [ -n "$failed_units" ]; then
      h_message="failed units: $failed_units"
      return 1
    fi
  fi
}


cmd_activate() {
  path="" action=switch subs="" keys="" health_timeout=30 confirm_timeout=0 token=""
  health_cmds="" activation_timeout=600
  secrets=0 age_path="" delta_tool="" host_key="" secrets_url="" secrets_sha256="" reboot_token="" boot_token="" caller_reboots=0
  while [ $# -gt 0 ]; do
    case $1 in
      --path) path=${2-}; shift 2 ;;
      --action) action=${2-}; shift 2 ;;
      --substituter) subs="$subs${subs:+ }${2-}"; shift 2 ;;
      --trusted-key) keys="$keys${keys:+ }${2-}"; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --health-cmd | --health-once | --health-timeout) health_option "$1" "${2-}"; shift 2 ;;
      --activation-timeout) activation_timeout=${2-}; shift 2 ;;
      --confirm-timeout) confirm_timeout=${2-}; shift 2 ;;
      --token) token=${2-}; shift 2 ;;
      --secrets) secrets=1; shift ;;
      --age) age_path=${2-}; shift 2 ;;
      --delta-tool) delta_tool=${2-}; shift 2 ;;
      --host-key) host_key=${2-}; shift 2 ;;
      --secrets-url) secrets_url=${2-}; shift 2 ;;
      --secrets-sha256) secrets_sha256=${2-}; shift 2 ;;
      --reboot-token) reboot_token=${2-}; shift 2 ;;
      --boot-token) boot_token=${2-}; shift 2 ;;
      --caller-reboots) caller_reboots=1; shift ;;
      *) usage "activate: unknown option '$1'" ;;
    esac
  done
  store_path_form "$path" ||
    usage "activate: --path must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$path'"
  case $action in switch|boot|test|dry-activate) ;; *) usage "activate: unknown action '$action'" ;; esac
  case $health_timeout in ''|*[!0-9]*) usage "activate: --health-timeout must be whole seconds" ;; esac
  case $confirm_timeout in ''|*[!0-9]*) usage "activate: --confirm-timeout must be whole seconds" ;; esac
  check_activation_timeout activate
  health_timeout=$(decimal "$health_timeout")
  confirm_timeout=$(decimal "$confirm_timeout")
  if [ "$confirm_timeout" -gt 0 ]; then
    case $token in ''|*[!A-Za-z0-9_-]*) usage "activate: --confirm-timeout needs a --token of letters, digits, '-' or '_'" ;; esac
  fi
  case $token in *[!A-Za-z0-9_-]*) usage "activate: --token must be letters, digits, '-' or '_'" ;; esac
  case $reboot_token in *[!A-Za-z0-9_-]*) usage "activate: --reboot-token must be letters, digits, '-' or '_'" ;; esac
  case $boot_token in *[!A-Za-z0-9_-]*) usage "activate: --boot-token must be letters, digits, '-' or '_'" ;; esac
  [ -z "$reboot_token" ] || [ "$action" = boot ] || usage "activate: --reboot-token needs --action boot"
  [ -z "$boot_token" ] || [ "$action" = boot ] || usage "activate: --boot-token needs --action boot"
  [ -z "$reboot_token" ] || [ -z "$boot_token" ] || [ "$boot_token" = "$reboot_token" ] ||
    usage "activate: --boot-token and --reboot-token name one pending boot: give one of them"
  # A reboot's pending boot is recorded under its token.
  [ -z "$reboot_token" ] || boot_token=$reboot_token
  check_secrets_options
  [ -z "$delta_tool" ] || store_path_form "$delta_tool" ||
    usage "activate: --delta-tool must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$delta_tool'"
  if [ "$pinned" = 1 ]; then
    [ -z "$subs$keys" ] || [ "$subs $keys" = "$pinned_subs $pinned_keys" ] ||
      log "trust is pinned by $NIXSHIP_TRUST_FILE: the --substituter and --trusted-key given are ignored"
    subs=$pinned_subs keys=$pinned_keys
  fi
  started=$(now)
  deadline=$((started + activation_timeout))
  checks=$(printf '%s' "$health_cmds" | grep -c . || true)
  profile_set=0 switch_started=0 prev_gen="" prev_system=""
  # The lock's deadline: the activation's, its health checks, and a rollback after them.
  l_kind=activate l_command="activate $path" l_path=$path l_action=$action l_token=$token
  l_since=$started l_deadline=$((deadline + checks * health_timeout + SETTLE_TIME)) l_phase=realise
  lock
  trap 'interrupted INT' INT
  trap 'interrupted TERM' TERM
  prev_gen=$(current_generation)
  prev_system=$(resolve /run/current-system || true)
  l_prev_gen=$prev_gen l_prev_system=$prev_system
  [ -z "$token" ] || rm -f "$state_dir/result-$token"
  # An activation decides the host's state anew: a reboot left unconfirmed is over.
  rm -f "$boot_file"
  write_info

  # 1. Realise (bounded by what is left of the activation timeout).
  # The root keeps the new system from the garbage collector until a profile or
  # /run/current-system holds it (test and dry-activate set no profile).
  # With --delta-tool, what deltas can rebuild first, into a local cache the realise asks first.
  delta_step
  realise_path "$path" "" realise 3 "$state_dir/realised" "$x_cache"
  delta_finish
  store_path_resolves "$path" ||
    step_failed realise 3 "$path is a link or resolves elsewhere ($(resolve "$path" || echo nowhere)): only a store path that is itself is activated"
  require_pinned_signature "$path" "" realise 3
  if u_bad=$(undeclared_check "$path"); then
    step_failed realise 2 "the command check '$u_bad' is not one $path declares in nixship/health-commands: this host's trust is pinned, and only its system's own commands run as root"
  fi

  # 2. Secrets.
  [ "$secrets" = 0 ] || install_secrets

  # 3. Profile.
  if [ "$action" = switch ] || [ "$action" = boot ]; then
    mkdir -p "$(dirname "$profile")"
    r=$(remaining)
    [ "$r" -gt 0 ] || timed_out profile
    l_phase=profile profile_set=1
    mark_phase profile
    new_generation "$path" "$r" ||
      step_failed profile 4 "cannot set the profile $profile to $path"
  fi

  # 4. Switch.
  r=$(remaining)
  [ "$r" -gt 0 ] || timed_out switch
  l_phase=switch switch_started=1
  mark_phase switch
  log "switch-to-configuration $action ($path)"
  run_switch "$path" "$action" "$r" switch
  status=$?
  [ "$status" -eq 0 ] || step_failed switch 4 "switch-to-configuration $action exited with $status"
  [ -z "$reboot_token" ] || begin_reboot
  [ -z "$boot_token" ] || record_boot
  if [ "$action" = boot ] || [ "$action" = dry-activate ]; then succeed now; fi

  # 5. Health.
  l_phase=health
  mark_phase health
  write_info
  run_health_checks "$path" || step_failed health 5 "$h_message"

  # 6. Confirmation window (magic rollback).
  if [ "$confirm_timeout" -gt 0 ]; then succeed window; fi
  succeed now
}

# Waits (at most SETTLE_TIME seconds) for the outcome of $token; a holder that dies
# meanwhile is taken over, which settles it.
settle_wait() {
  i=0
  while [ ! -e "$state_dir/result-$token" ] && [ "$i" -lt $((SETTLE_TIME * 10)) ]; do
    if [ $((i % 10)) = 9 ]; then
      clear_stale "$verb" "$verb --token $token"
      # Nothing left to report: the activation went through before the abort reached it.
      if [ ! -d "$state_dir/lock" ] && [ ! -e "$state_dir/pending-$token" ] &&
        [ ! -e "$state_dir/result-$token" ]; then
        sleep 0.5 # (an outcome is written just after the lock goes)
        break
      fi
    fi
    sleep 0.1
    i=$((i + 1))
  done
}

# confirm or abort: signal the watcher (or stop the activation still under way), then wait
# (bounded) for its outcome.
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
  mkdir -p "$state_dir"
  clear_stale "$verb" "$verb --token $token"
  settled="" i=0
  if [ "$verb" = abort ] && [ -d "$state_dir/lock" ]; then
    # A takeover under way (bounded) comes first: it settles its holder, then its taker runs.
    judge_lock
    while [ "$o_kind" = takeover ] && [ "$o_alive" = 1 ] && [ "$i" -lt "$SETTLE_TIME" ]; do
      sleep 1
      i=$((i + 1))
      judge_lock
    done
    if [ "$o_kind" = activate ] && [ "$o_token" = "$token" ] && [ -n "$o_pid" ] &&
      proc_alive "$o_pid" "$o_start"; then
      # The activation is still under way: it stops what runs and rolls back.
      : >"$state_dir/abort-$token"
      log "stopping the activation of ${o_path:-?} (pid $o_pid, in its ${o_phase:-first} phase)"
      kill -s TERM "$o_pid" 2>/dev/null
      settle_wait
      settled=1
    fi
  fi
  if [ -z "$settled" ]; then
    if [ ! -e "$state_dir/pending-$token" ] && [ ! -e "$state_dir/result-$token" ]; then
      printf '{"ok":false,"command":"%s","result":"unknown-token","exitCode":9,"message":%s%s}\n' \
        "$verb" "$(json_str "no activation is waiting for token $token")" "$(took_over_json)"
      exit 9
    fi
    if [ ! -e "$state_dir/result-$token" ]; then
      if [ "$verb" = confirm ]; then : >"$state_dir/confirmed-$token"; else : >"$state_dir/abort-$token"; fi
      # Wake the watcher (see watcher_script).
      sleeper=$(cat "$state_dir/sleeper-$token" 2>/dev/null || true)
      [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
      settle_wait
    fi
  fi
  outcome=$(sed -n 1p "$state_dir/result-$token" 2>/dev/null || true)
  reason=$(sed -n 2p "$state_dir/result-$token" 2>/dev/null || true)
  case $outcome in
    confirmed) code=0 ok=true ;;
    rolled-back) code=6 ok=false; [ "$verb" = abort ] && code=0 && ok=true ;;
    rollback-failed) code=7 ok=false ;;
    *) code=7 ok=false outcome=unknown
      reason="no outcome for token $token within ${SETTLE_TIME}s"
      [ -d "$state_dir/lock" ] || [ -e "$state_dir/pending-$token" ] ||
        reason="the activation with token $token ended before the $verb reached it" ;;
  esac
  printf '{"ok":%s,"command":"%s","result":%s,"exitCode":%s,"message":%s,"generation":%s,"current":%s%s}\n' \
    "$ok" "$verb" "$(json_str "$outcome")" "$code" "$(json_str "$reason")" \
    "$(json_num "$(current_generation)")" "$(json_opt "$(resolve /run/current-system || true)")" \
    "$(took_over_json)"
  exit "$code"
}

cmd_rollback() {
  to="" activation_timeout=600
  while [ $# -gt 0 ]; do
    case $1 in
      --to) to=${2-}; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --activation-timeout) activation_timeout=${2-}; shift 2 ;;
      *) usage "rollback: unknown option '$1'" ;;
    esac
  done
  case $to in *[!0-9]*) usage "rollback: --to must be a generation number" ;; esac
  to=$(decimal "$to")
  check_activation_timeout rollback
  l_kind=rollback l_command="rollback${to:+ to $to}" l_since=$(now) l_phase=""
  deadline=$((l_since + activation_timeout))
  l_deadline=$((deadline + SETTLE_TIME))
  lock
  # A rollback decides the host's state anew: a reboot left unconfirmed is over.
  rm -f "$boot_file"
  from=$(current_generation)
  [ -n "$to" ] || to=$(previous_generation "${from:-0}")
  target=""
  [ -z "$to" ] || target=$(generation_path "$to")
  g_why="no generation ${to:-before ${from:-none}} in $profile"
  if [ -z "$to" ] || [ -z "$target" ] || ! generation_usable "$to"; then
    unlock
    printf '{"ok":false,"command":"rollback","result":"no-generation","exitCode":9,"message":%s,"generation":%s%s}\n' \
      "$(json_str "$g_why")" "$(json_num "$from")" "$(took_over_json)"
    exit 9
  fi
  # Killed halfway, a takeover finishes it: the host goes to the generation asked for.
  l_command="rollback to $to" l_path=$target l_action=switch l_prev_gen=$to l_prev_system=$target
  l_phase=switch
  write_info
  mark_phase rollback
  log "rolling back from generation ${from:-?} to $to ($target)"
  why=""
  if ! nix-env -p "$profile" --switch-generation "$to" >&2; then
    why="switching the profile to generation $to failed"
  else
    r=$(remaining)
    if [ "$r" -le 0 ] || ! run_switch "$target" switch "$r" rollback; then
      why="switching to generation $to failed"
      [ "$(remaining)" -gt 0 ] ||
        why="switching to generation $to ran past the activation timeout of ${activation_timeout}s; stopped it"
    fi
  fi
  unlock
  if [ -n "$why" ]; then
    log "$why"
    printf '{"ok":false,"command":"rollback","result":"failed","exitCode":7,"message":%s,"from":%s,"generation":%s%s}\n' \
      "$(json_str "$why")" "$(json_num "$from")" "$(json_num "$(current_generation)")" \
      "$(took_over_json)"
    exit 7
  fi
  printf '{"ok":true,"command":"rollback","result":"rolled-back","from":%s,"generation":%s,"path":%s%s}\n' \
    "$(json_num "$from")" "$to" "$(json_str "$target")" "$(took_over_json)"
}

# Whether generation $1 of the profile is one to switch to as root; why not is in g_why. Its link
# must lead straight to a store path in canonical form that resolves to itself (a link planted
# in the profiles, or one through a path a user controls, is not a system), and with pinned
# trust its profiles directory must be root's alone and the system signed by a pinned key.
generation_usable() {
  g_target=$(readlink "$profile-$1-link" 2>/dev/null)
  if ! store_path_form "$g_target" || ! store_path_resolves "$g_target"; then
    g_why="generation $1 of $profile leads to '$g_target', not to a store path in canonical form that resolves to itself: not a system to roll back to"
    return 1
  fi
  if [ "$pinned" = 1 ] && ! root_only_dir "$(dirname "$profile")"; then
    g_why="$(dirname "$profile") can be changed by users other than root: this host's trust is pinned, and its generations are not trusted (make it root's alone, mode 0755)"
    return 1
  fi
  if unsigned_by_pins "$g_target" "generation $1, "; then
    g_why="$p_why: not a system to roll back to"
    return 1
  fi
}

# --- prune: old generations and garbage, after a confirmed activation.

# INT or TERM ($1) during a prune: stop what runs (what was removed stays removed).
prune_interrupted() {
  trap '' INT TERM
  stop_child
  unlock
  printf '{"ok":false,"command":"prune","result":"interrupted","exitCode":6,"message":%s}\n' \
    "$(json_str "interrupted by SIG$1")"
  exit 6
}

# Roots system $1 (the running or booted one) as $2 in the state directory, for the garbage
# collector: NixOS roots both itself; a host that is not NixOS may not.
root_system() {
  [ -n "$1" ] || return 0
  timeout -k "$KILL_GRACE" 20 nix-store --realise "$1" --add-root "$state_dir/$2" >/dev/null 2>&1 ||
    log "cannot root $1 for the garbage collector"
}

cmd_prune() {
  keep="" gc_timeout=300
  while [ $# -gt 0 ]; do
    case $1 in
      --keep) keep=${2-}; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --gc-timeout) gc_timeout=${2-}; shift 2 ;;
      *) usage "prune: unknown option '$1'" ;;
    esac
  done
  keep=$(decimal "$keep") gc_timeout=$(decimal "$gc_timeout")
  if ! digits "$keep" || [ ${#keep} -gt 6 ] || [ "$keep" -lt 1 ]; then
    usage "prune: --keep must be a number of generations, from 1 to 999999"
  fi
  if ! digits "$gc_timeout" || [ ${#gc_timeout} -gt 6 ] || [ "$gc_timeout" -lt 1 ]; then
    usage "prune: --gc-timeout must be whole seconds, from 1 to 999999"
  fi
  l_kind=prune l_command="prune to $keep generations" l_since=$(now) l_phase=prune
  l_deadline=$((l_since + gc_timeout + SETTLE_TIME))
  lock
  trap 'prune_interrupted INT' INT
  trap 'prune_interrupted TERM' TERM
  cur=$(current_generation)
  back=$(previous_generation "${cur:-0}")
  newest=$(generations | tail -n "$keep")
  kept="" removed="" remove=""
  for g in $(generations); do
    if [ "$g" = "$cur" ] || [ "$g" = "$back" ] || printf '%s\n' "$newest" | grep -qx "$g"; then
      kept="$kept${kept:+,}$g"
    else
      remove="$remove $g" removed="$removed${removed:+,}$g"
    fi
  done
  if [ -n "$remove" ]; then
    log "removing generations$remove of $profile"
    # shellcheck disable=SC2086 # (numbers only)
    if ! timeout -k "$KILL_GRACE" 60 nix-env -p "$profile" --delete-generations $remove >&2; then
      unlock
      printf '{"ok":false,"command":"prune","result":"failed","exitCode":12,"message":%s,"generation":%s}\n' \
        "$(json_str "cannot remove generations$remove of $profile")" "$(json_num "$cur")"
      exit 12
    fi
  fi
  root_system "$(resolve /run/current-system || true)" gcroot-current
  root_system "$(resolve /run/booted-system || true)" gcroot-booted
  log "collecting garbage (at most ${gc_timeout}s)"
  gc="done" deleted=null freed=null
  bounded "$state_dir/gc-output" "$gc_timeout" nix-store --gc
  case $? in
    0)
      line=$(tail -n 1 "$state_dir/gc-output" 2>/dev/null)
      n=${line%% store paths deleted*} m=${line#*deleted, } m=${m%% MiB freed*}
      if digits "$n" && case $m in '' | *[!0-9.]*) false ;; esac; then deleted=$n freed=$m; fi ;;
    124 | 137) gc=timed-out; log "collecting garbage ran past ${gc_timeout}s; stopped it" ;;
    *) gc=failed; log "collecting garbage failed" ;;
  esac
  rm -f "$state_dir/gc-output"
  unlock
  printf '{"ok":true,"command":"prune","result":"pruned","kept":[%s],"removed":[%s],"gc":"%s","deletedPaths":%s,"freedMiB":%s,"generation":%s%s}\n' \
    "$kept" "$removed" "$gc" "$deleted" "$freed" "$(json_num "$cur")" "$(took_over_json)"
}

# Refuses $NIXSHIP_CHECK_PATHS unless each line is a store path in canonical form (or empty):
# the lines are data, one word each, never an option of the Nix that asks about them.
check_paths_form() {
  m_bad=$(printf '%s\n' "${NIXSHIP_CHECK_PATHS-}" |
    LC_ALL=C grep -n -v -x -E -e "$STORE_PATH_RE" -e '' | head -n 1 | cut -d: -f1)
  [ -z "$m_bad" ] ||
    usage "status --check-paths: line $m_bad of the paths is not a store path in canonical form (/nix/store/HASH-NAME, one a line)"
}

# The hash parts of the paths in $NIXSHIP_CHECK_PATHS that the store lacks, as a JSON array;
# fails when the store cannot be asked (no Nix, or no answer within 20 s).
missing_paths() {
  set -f
  m_invalid=$(printf '%s\n' "${NIXSHIP_CHECK_PATHS-}" | LC_ALL=C grep -x -E -e "$STORE_PATH_RE" |
    timeout -k "$KILL_GRACE" 20 xargs -r nix-store --check-validity --print-invalid 2>/dev/null) ||
    return 1
  m_sep=""
  printf '['
  for m_path in $m_invalid; do
    m_hash=${m_path#/nix/store/}
    printf '%s"%s"' "$m_sep" "${m_hash%%-*}"
    m_sep=,
  done
  printf ']'
}

# The sha256 of the installed secrets' manifest (of nothing, when none were ever installed).
secrets_digest() {
  if [ -f "$state_dir/secrets" ]; then sha256sum <"$state_dir/secrets"; else printf '' | sha256sum; fi |
    cut -c1-64
}

# What a reboot would change, as NixOS's own switch-to-configuration judges it: the booted
# system's kernel, initrd and kernel modules against the current system's (a switch loads none
# of them). JSON: due, which of them differ, since when the current system runs (the mtime of
# /run/current-system, Unix seconds), and the booted ones' targets (for the deployer's plan);
# null without a booted or a current system.
reboot_json() {
  b_sys=$(resolve /run/booted-system || true) c_sys=$(resolve /run/current-system || true)
  if [ -z "$b_sys" ] || [ -z "$c_sys" ]; then
    printf 'null'
    return 0
  fi
  b_changed="" b_parts=""
  for b_part in kernel initrd kernel-modules; do
    b_was=$(resolve "$b_sys/$b_part" || true)
    [ "$b_was" = "$(resolve "$c_sys/$b_part" || true)" ] ||
      b_changed="$b_changed${b_changed:+,}\"$b_part\""
    b_parts="$b_parts${b_parts:+,}\"$b_part\":$(json_opt "$b_was")"
  done
  b_due=false
  [ -z "$b_changed" ] || b_due=true
  printf '{"due":%s,"changed":[%s],"since":%s,"booted":{%s}}' "$b_due" "$b_changed" \
    "$(json_num "$(stat -c %Y /run/current-system 2>/dev/null | grep -x '[0-9]*')")" "$b_parts"
}

# --- Reboots (deploy --reboot): `activate --action boot --reboot-token T` records the pending
# boot and reboots (`--boot-token T` records it alone: deploy --action boot, a reboot left to
# later); after the boot, `after-boot` checks what booted and runs the health checks, then
# `confirm-boot` keeps it or `abort-boot` goes back. The pending boot outlives /run in
# boot_file, on the disk: the token, the system to boot, its generation, the generation before
# it with that generation's system, and the boot it was recorded in (another one booted since).

# This boot's identity: the kernel's boot id and the time /run/booted-system was made (a reboot
# makes both anew; a lab host's, only the second).
boot_id() {
  printf '%s/%s' "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" \
    "$(stat -c %Z /run/booted-system 2>/dev/null)"
}

# What systemd-bless-boot says of this boot: good, bad, indeterminate (counted, not yet
# judged) or clean (not counted); empty where the system has none.
boot_assessment() { [ -x "$BLESS" ] && "$BLESS" status 2>/dev/null | head -n 1; }

# Marks a counted boot $1 (good or bad), so that the boot loader keeps or skips its entry.
bless() {
  case $(boot_assessment) in
    indeterminate | good | bad) "$BLESS" "$1" >&2 || log "systemd-bless-boot $1 failed" ;;
  esac
}

# Reboots 2 s from now, detached, so that the caller has its answer first. Only the running
# system's systemctl, never one from PATH.
schedule_reboot() {
  [ -x "$SYSTEMCTL" ] || return 1
  setsid sh -c "sleep 2; exec $SYSTEMCTL reboot" </dev/null >/dev/null 2>&1 &
}

# The pending boot into p_* (p_token empty: none). Known keys only, never evaluated.
read_boot() {
  p_token="" p_path="" p_generation="" p_prev_gen="" p_prev_system="" p_since="" p_boot=""
  [ -f "$boot_file" ] || return 0
  while IFS= read -r line; do
    case ${line%%=*} in
      token | path | generation | prev_gen | prev_system | since | boot) eval "p_${line%%=*}=\${line#*=}" ;;
    esac
  done <"$boot_file"
  for v in generation prev_gen since; do eval "digits \"\$p_$v\" || p_$v=''"; done
}

# The boot activation went through: record the pending boot under $boot_token, for the verbs
# that judge it once the host booted it (fails in phase $1).
write_boot() {
  b_prev=""
  [ -z "$prev_gen" ] || b_prev=$(generation_path "$prev_gen")
  { mkdir -p "$boot_dir" &&
    printf 'token=%s\npath=%s\ngeneration=%s\nprev_gen=%s\nprev_system=%s\nsince=%s\nboot=%s\n' \
      "$boot_token" "$path" "$(current_generation)" "$prev_gen" "$b_prev" "$(now)" "$(boot_id)" \
      >"$boot_file.tmp" && mv -f "$boot_file.tmp" "$boot_file"; } ||
    fail "$1" 4 "cannot record the pending boot in $boot_file"
}

# A boot activation without a reboot (--boot-token): the new system is what the host boots
# next, and its boot is pending until after-boot, confirm-boot or abort-boot judge it (or an
# activation replaces it).
record_boot() {
  write_boot switch
  log "generation $(current_generation) ($path) boots next: pending until the host has booted it and its boot is judged"
}

# The boot activation went through: record the pending boot, reboot, and say so.
begin_reboot() {
  l_phase=reboot
  mark_phase reboot
  [ "$caller_reboots" = 1 ] || [ -x "$SYSTEMCTL" ] ||
    fail reboot 4 "cannot reboot: $SYSTEMCTL is missing"
  write_boot reboot
  if [ "$caller_reboots" = 0 ]; then
    schedule_reboot || { rm -f "$boot_file"; fail reboot 4 "cannot reboot: $SYSTEMCTL failed"; }
  fi
  log "rebooting into generation $(current_generation) ($path)"
  trap '' INT TERM
  unlock
  printf '{"ok":true,"command":"activate","result":"rebooting","bootId":%s,' "$(json_str "$(boot_id)")"
  activated_json
  exit 0
}

# --token T and the check options of after-boot and abort-boot; takes the pending boot and the
# lock for verb $1.
boot_verb_args() {
  verb=$1 token="" health_cmds="" health_timeout=30 rollback_reboot=0
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --token) token=${2-}; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --health-cmd | --health-once | --health-timeout) health_option "$1" "${2-}"; shift 2 ;;
      --reboot-rollback) rollback_reboot=1; shift ;;
      *) usage "$verb: unknown option '$1'" ;;
    esac
  done
  case $token in ''|*[!A-Za-z0-9_-]*) usage "$verb: --token is required" ;; esac
  case $health_timeout in ''|*[!0-9]*) usage "$verb: --health-timeout must be whole seconds" ;; esac
  health_timeout=$(decimal "$health_timeout")
  mkdir -p "$state_dir"
  read_boot
  if [ "$p_token" != "$token" ]; then
    printf '{"ok":false,"command":"%s","result":"unknown-token","exitCode":9,"message":%s}\n' \
      "$verb" "$(json_str "no reboot is pending for token $token")"
    exit 9
  fi
  checks=$(printf '%s' "$health_cmds" | grep -c . || true)
  l_kind=$verb l_command="$verb --token $token" l_path=$p_path l_since=$(now) l_phase=health
  l_deadline=$((l_since + checks * health_timeout + SETTLE_TIME))
  lock
  prev_gen=$p_prev_gen
}

boot_json() {
  printf '"booted":%s,"bootId":%s,"generation":%s}\n' \
    "$(json_opt "$(resolve /run/booted-system || true)")" "$(json_str "$(boot_id)")" \
    "$(json_num "$(current_generation)")"
}

# The rebooted system is not kept (phase $1, exit code $2, message $3): the profile back on the
# generation before it (the boot loader's default again, its entry installed by that system's
# switch-to-configuration boot), the new generation dropped; a boot of the new system marked
# bad and, with --reboot-rollback, the host rebooted into the previous one.
undo_boot() {
  u_phase=$1 code=$2 message=$3 u_reboot=false outcome=rolled-back rolled=true
  u_booted=$(resolve /run/booted-system || true)
  mark_phase rollback
  log "$message; rolling back to generation ${p_prev_gen:-?}"
  if [ -z "$p_prev_gen" ] || [ -z "$p_prev_system" ]; then
    outcome=rollback-failed rolled=false code=7
    message="$message; no earlier system to go back to: the host runs $u_booted, marked failed until an activation succeeds"
    mark_failed "$u_booted" "$message"
  else
    if [ "$(current_generation)" != "$p_prev_gen" ]; then
      if nix-env -p "$profile" --switch-generation "$p_prev_gen" >&2; then
        forget_generation "$p_generation"
      else
        rolled=false
      fi
    fi
    run_switch "$p_prev_system" boot "$ROLLBACK_TIMEOUT" rollback || rolled=false
    if [ "$rolled" = false ]; then
      outcome=rollback-failed code=7 message="$message; the rollback failed too"
    fi
  fi
  if [ "$u_booted" = "$p_path" ]; then
    bless bad
    if [ "$rolled" = true ] && [ "$rollback_reboot" = 1 ]; then
      if schedule_reboot; then
        u_reboot=true
        log "rebooting into generation $p_prev_gen ($p_prev_system)"
      else
        message="$message; cannot reboot into it: $SYSTEMCTL is missing"
      fi
    fi
  else
    # The host booted another system (its boot loader fell back): that boot went well.
    bless good
  fi
  rm -f "$boot_file"
  unlock
  printf '{"ok":false,"command":"%s","result":%s,"phase":%s,"exitCode":%s,"message":%s,"rolledBack":%s,"rebooting":%s,' \
    "$verb" "$(json_str "$outcome")" "$(json_str "$u_phase")" "$code" "$(json_str "$message")" \
    "$rolled" "$u_reboot"
  boot_json
  exit "$code"
}

# after-boot --token T [checks]: the host came back; is it on the system it rebooted for?
# Then its command checks. Reports "booted" (and keeps the pending boot for confirm-boot), or
# goes back (undo_boot).
cmd_after_boot() {
  boot_verb_args after-boot "$@"
  # Still the boot the pending one was recorded in: nothing booted it yet, nothing to judge.
  if [ -n "$p_boot" ] && [ "$p_boot" = "$(boot_id)" ]; then
    unlock
    printf '{"ok":false,"command":"after-boot","result":"not-rebooted","exitCode":9,"message":%s}\n' \
      "$(json_str "the host has not rebooted since generation ${p_generation:-?} ($p_path) was set to boot next: nothing to judge yet")"
    exit 9
  fi
  booted=$(resolve /run/booted-system || true)
  if [ "$booted" != "$p_path" ]; then
    undo_boot reboot 4 "the host came back on ${booted:-no system} instead of $p_path: that system did not boot (the boot loader fell back)"
  fi
  mark_phase health
  run_health_checks "$p_path" || undo_boot health 5 "$h_message"
  unlock
  printf '{"ok":true,"command":"after-boot","result":"booted","assessment":%s,' \
    "$(json_opt "$(boot_assessment)")"
  boot_json
  exit 0
}

# confirm-boot --token T: keeps the rebooted system (its boot marked good where counted).
cmd_confirm_boot() {
  boot_verb_args confirm-boot "$@"
  bless good
  rm -f "$boot_file" "$state_dir/failed"
  unlock
  printf '{"ok":true,"command":"confirm-boot","result":"confirmed",'
  boot_json
  exit 0
}

# abort-boot --token T [--reboot-rollback]: the deployer's checks failed after the boot.
cmd_abort_boot() {
  boot_verb_args abort-boot "$@"
  undo_boot confirm 6 "aborted by the deployer"
}

cmd_status() {
  check_paths=false
  while [ $# -gt 0 ]; do
    case $1 in
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --check-paths) check_paths=true; shift ;;
      *) usage "status: unknown option '$1'" ;;
    esac
  done
  gens=""
  for n in $(generations | tail -n 10); do
    # A generation a failed activation is dropping at this moment has no path left: skip it.
    g_path=$(generation_path "$n") || continue
    [ -n "$g_path" ] || continue
    gens="$gens${gens:+,}{\"generation\":$n,\"path\":$(json_str "$g_path")}"
  done
  pending=""
  for f in "$state_dir"/pending-*; do [ -e "$f" ] && pending=${f##*/pending-}; done
  activation=null
  if [ -d "$state_dir/lock" ]; then
    judge_lock
    stale=false
    [ -z "$o_why" ] || stale=true
    activation=$(printf '{"command":%s,"path":%s,"pid":%s,"since":%s,"deadline":%s,"stale":%s}' \
      "$(json_str "$o_command")" "$(json_opt "$o_path")" "$(json_num "$o_pid")" \
      "$(json_num "$o_since")" "$(json_num "$o_deadline")" "$stale")
  fi
  missing=""
  if $check_paths; then
    # A pinned script is started by its wrapper, not piped: the paths come on its input.
    if [ "$pinned" = 1 ] && [ -z "${NIXSHIP_CHECK_PATHS+set}" ]; then
      NIXSHIP_CHECK_PATHS=$(head -c "$CHECK_PATHS_LIMIT")
    fi
    check_paths_form
    missing=",\"missing\":$(missing_paths || printf null)"
  fi
  read_boot
  boot_pending=null
  [ -z "$p_token" ] || boot_pending=$(printf '{"token":%s,"path":%s,"since":%s,"generation":%s,"previous":%s,"bootId":%s}' \
    "$(json_str "$p_token")" "$(json_opt "$p_path")" "$(json_num "$p_since")" \
    "$(json_num "$p_generation")" "$(json_opt "$p_prev_system")" "$(json_opt "$p_boot")")
  boot=$(printf '{"id":%s,"assessment":%s,"pending":%s}' "$(json_str "$(boot_id)")" \
    "$(json_opt "$(boot_assessment)")" "$boot_pending")
  printf '{"ok":true,"command":"status","current":%s,"booted":%s,"profile":%s,"generation":%s,"generations":[%s],"pending":%s,"activation":%s,"failed":%s,"reboot":%s,"boot":%s,"secrets":"%s","pinned":%s,"pinnedActivator":%s%s}\n' \
    "$(json_opt "$(resolve /run/current-system || true)")" \
    "$(json_opt "$(resolve /run/booted-system || true)")" \
    "$(json_opt "$(resolve "$profile" || true)")" \
    "$(json_num "$(current_generation)")" "$gens" "$(json_opt "$pending")" "$activation" \
    "$(failed_json)" "$(reboot_json)" "$boot" "$(secrets_digest)" "$(pinned_json)" \
    "$([ -x "$PINNED_ACTIVATOR" ] && echo true || echo false)" "$missing"
}

# This run's pinned trust as JSON: null when the trust is the caller's, else the names of the
# pinned keys and the substituters.
pinned_json() {
  if [ "$pinned" = 0 ]; then
    printf 'null'
    return 0
  fi
  j_keys="" j_subs=""
  for j_key in $pinned_keys; do j_keys="$j_keys${j_keys:+,}$(json_str "${j_key%%:*}")"; done
  for j_sub in $pinned_subs; do j_subs="$j_subs${j_subs:+,}$(json_str "$j_sub")"; done
  printf '{"keys":[%s],"substituters":[%s]}' "$j_keys" "$j_subs"
}

# --- closure: what a plan's diff needs of a system the cache lacks. nix-store --dump-db gives,
# per path: the path, its NarHash, its NarSize, its deriver, the number of its references, and
# those; awk numbers the paths and writes each as "PATH NARSIZE" and its references' numbers.
CLOSURE_LIMIT=700000
cmd_closure() {
  c_path=""
  while [ $# -gt 0 ]; do
    case $1 in
      --path) c_path=${2-}; shift 2 ;;
      *) usage "closure: unknown option '$1'" ;;
    esac
  done
  store_path_form "$c_path" ||
    usage "closure: --path must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after)"
  closure_fail() {
    printf '{"ok":false,"command":"closure","result":"%s","exitCode":%s,"message":%s}\n' \
      "$1" "$2" "$(json_str "$3")"
    exit "$2"
  }
  timeout -k "$KILL_GRACE" 20 nix-store --check-validity "$c_path" 2>/dev/null ||
    closure_fail absent 3 "$c_path is not in this host's store"
  c_db=$(mktemp) || closure_fail failed 13 "cannot make a temporary file"
  # shellcheck disable=SC2016 # $1 is the inner shell's: the path, passed as an argument.
  if ! timeout -k "$KILL_GRACE" 60 sh -c \
    'c=$(nix-store -qR "$1") && printf "%s\n" "$c" | xargs -r nix-store --dump-db' \
    sh "$c_path" >"$c_db" 2>/dev/null; then
    rm -f "$c_db"
    closure_fail failed 13 "cannot read the closure of $c_path within 60 s"
  fi
  # The program's lines start at the margin: the SSM document strips indentation, which must
  # change nothing sh runs (ssm-document.test.ts).
  c_out=$(awk '
st == 0 { n++; path[n] = $0; at[$0] = n; st = 1; next }
st == 1 { st = 2; next }
st == 2 { size[n] = $0; st = 3; next }
st == 3 { st = 4; next }
st == 4 { left = $0 + 0; refs[n] = ""; st = (left > 0) ? 5 : 0; next }
st == 5 { refs[n] = refs[n] " " $0; if (--left == 0) st = 0; next }
END {
for (i = 1; i <= n; i++) {
line = path[i] " " size[i]
k = split(refs[i], r, " ")
for (j = 1; j <= k; j++) line = line " " at[r[j]]
print line
}
}' "$c_db" | base64 | tr -d '\n' | head -c "$((CLOSURE_LIMIT + 1))")
  rm -f "$c_db"
  [ -n "$c_out" ] || closure_fail failed 13 "cannot read the closure of $c_path within 60 s"
  [ "${#c_out}" -le "$CLOSURE_LIMIT" ] ||
    closure_fail too-large 13 "the closure of $c_path is over $CLOSURE_LIMIT bytes encoded"
  printf '{"ok":true,"command":"closure","path":%s,"closure":"%s"}\n' "$(json_str "$c_path")" "$c_out"
}

[ $# -gt 0 ] || usage "expected a command: activate, after-boot, confirm-boot, abort-boot, confirm, abort, rollback, prune, status or closure"
command=$1
shift
load_pinned_trust
case $command in
  activate) cmd_activate "$@" ;;
  after-boot) cmd_after_boot "$@" ;;
  confirm-boot) cmd_confirm_boot "$@" ;;
  abort-boot) cmd_abort_boot "$@" ;;
  confirm) cmd_settle confirm "$@" ;;
  abort) cmd_settle abort "$@" ;;
  rollback) cmd_rollback "$@" ;;
  prune) cmd_prune "$@" ;;
  status) cmd_status "$@" ;;
  closure) cmd_closure "$@" ;;
  *) usage "unknown command '$command'" ;;
esac
