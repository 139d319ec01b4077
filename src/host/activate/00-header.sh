#!/bin/sh
# nixship's activation contract: the one script that runs on a host, whatever the delivery
# mode (piped over SSH as `sh -s -- COMMAND ...`, embedded in the SSM document, run by the
# agent). It needs only a POSIX sh, coreutils and Nix (with secrets, age; fetching them, curl).
#
#   activate --path P [--action switch|boot|test|dry-activate] [--substituter URL]...
#            [--trusted-key KEY]... [--profile PROFILE] [--health-cmd CMD]... [--health-once CMD]...
#            [--health-timeout S] [--activation-timeout S] [--token T [--confirm-timeout S]]
#            [--secrets [--age P] [--host-key FILE] [--secrets-url URL|- --secrets-sha256 HEX]]
#            [--delta-tool D] [--expect-current S]
#       0. with --expect-current S: under the lock, before anything changes, the host must run
#          S (/run/current-system); one that runs another system was changed since the caller
#          looked (a rollback of a rollout gives what that rollout left there): nothing is
#          done, the result is "changed" (exit 14), and no outcome is kept for --token
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
#       5. health checks, each within its timeout: the --health-timeout given before it (a
#          check before any takes the last one given), default 30 s; and no failed systemd
#          units. One that fails is reported with its exit code and the end of its output
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
#   abort --token T [--keep-token]
#                            roll back now: the activation with that token is stopped (and
#                            rolls back), or its confirmation window closed at once; one that
#                            has not begun is cancelled (it ends at once, changing nothing),
#                            unless --keep-token (the caller activates under it again)
#   rollback [--to GEN] [--activation-timeout S]
#                            switch to the previous generation, or generation GEN
#   prune --keep N [--gc-timeout S]
#                            after a confirmed activation: remove the profile's generations
#                            beyond the newest N, never the current one or the one before it
#                            (the rollback target), then collect garbage (nix-store --gc, the
#                            running and booted systems rooted) within S seconds (default 300);
#                            reports kept and removed generations, gc (done, timed-out or
#                            failed), deletedPaths and freedMiB
#   check [--health-cmd CMD]... [--health-once CMD]... [--health-timeout S]
#                            the command checks and systemd's failed units again, on the
#                            running system, as activate's health step runs them; changes
#                            nothing (a bake repeats it); exit 5 when one fails ("check": which)
#   restore-secrets [--system PATH]
#                            at boot, before services start: the secrets of the last bundle
#                            installed (kept, encrypted, in /nix/var/nixship/secrets-bundle)
#                            installed again unless they are ("restored", with "secrets": how
#                            many; else "unchanged"); a failure as the secrets step's (exit 11)
#   status [--check-paths]   the current, booted and profile systems, recent generations,
#                            the activation holding the lock, this boot (its id, what
#                            systemd-bless-boot says of it, a reboot pending confirmation) and
#                            the sha256 of the installed secrets' manifest ("secrets"); with --check-paths, also which
#                            of the store paths in $NIXSHIP_CHECK_PATHS (one per line, set
#                            before the script in its input) are not in the store ("missing":
#                            their hash parts; by the paths' names on disk, no Nix started)
#   (pinned trust) With NIXSHIP_TRUST_FILE set (by the host's installed `nixship-activate`,
#   never by a caller: sudo resets the environment), the host trusts only what that file says:
#   a root-owned file, writable by root alone, of "substituter URL" and "trusted-key NAME:KEY"
#   lines. --substituter and --trusted-key are then ignored, every system and package realised
#   must be signed by a pinned key (also one already in the store), and what would let a caller
#   run a command or write a file of its choice as root is refused: --profile, --host-key (but
#   the default), a --health-cmd or --health-once that the system does not declare itself (one
#   line of PATH/nixship/health-commands each), and a secret whose "NAME OWNER GROUP MODE PATH"
#   is not a line of PATH/nixship/secrets (exit 11); --age must be signed by a pinned key; a
#   system, or a generation to roll back to, without sw/bin/nixship-activate is refused (it
#   would unpin the host: exit 2, or 9 for rollback). The
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
# --secrets-sha256; "-": the URL is the first line of the input, as the SSM document gives it,
# so that no process's arguments show it; "age:BASE64": the URL sealed to the host's key with
# age, opened with it; "none": the empty bundle, nothing fetched). Its first line is "nixship-secrets 1", then one line per secret, fields
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
# changed); 12 generations could not be removed (prune); 14 the host does not run the system
# --expect-current names (nothing changed). After
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
# what is stopped gets KILL_GRACE seconds from TERM to KILL; PROFILE_TIMEOUT bounds each
# nix-env that moves the profile back or drops a generation (it waits on Nix's profile lock,
# which another process may hold). SETTLE_TIME bounds them all (the end of an activation):
# part of a holder's deadline, and what confirm and abort wait at most (SETTLE_TIMEOUT, the
# deployer's wait for them, is longer).
ROLLBACK_TIMEOUT=45 KILL_GRACE=5 PROFILE_TIMEOUT=10
SETTLE_TIME=$((ROLLBACK_TIMEOUT + PROFILE_TIMEOUT + 3 * KILL_GRACE + 5))
# The largest secrets bundle taken (MAX_SECRETS_BUNDLE in host/secrets-bundle.ts), and the
# seconds that fetching it, or decrypting one secret, may take.
MAX_SECRETS_BUNDLE=8388608 MAX_SECRETS_URL=16400 SECRETS_TIMEOUT=30
# The most a pinned script reads of the paths `status --check-paths` asks about (2 MiB: the
# deployer asks at most 20,000 paths of about 80 bytes).
CHECK_PATHS_LIMIT=2097152
# The installed activation script of a host with pinned trust (nixship's NixOS module).
PINNED_ACTIVATOR=/run/current-system/sw/bin/nixship-activate
# Where the secrets step keeps the bundle, the age files and the list of what it wrote; the
# file it takes the bundle from (restore-secrets), if any.
secrets_work=$state_dir/secrets-work secrets_file=""
# The command a failure's JSON names (finish_failed).
outcome_command=activate
# The timeout the health checks given next take, and a --health-timeout that is not one
# (health_option).
h_next="" h_bad_timeout=""
# A reboot under way (see "Reboots"), and the running system's tools for it.
boot_dir=/nix/var/nixship boot_file=/nix/var/nixship/boot-pending
# A confirmation window open on this host, on the disk (/run does not outlive a boot): its
# token and system. The watcher empties it when it ends; found with no trace of its window in
# /run (no lock, no pending or outcome for its token), a boot cut the window, and the system
# the host booted back into was never confirmed (window_cut_json). Emptied, not removed, by
# a redirection: no process is started for it.
window_file=/nix/var/nixship/window-pending
# The last secrets bundle installed (ciphertexts only, root's alone) and the age package it
# named, on the disk: restore-secrets installs it again after a boot emptied /run.
saved_secrets=/nix/var/nixship/secrets-bundle saved_age=/nix/var/nixship/secrets-age
# The highest generation number each profile ever had (see new_generation), on the disk: it
# must outlive a reboot, as the profile's generations do.
generations_dir=/nix/var/nixship/generations
BLESS=/run/current-system/systemd/lib/systemd/systemd-bless-boot
SYSTEMCTL=/run/current-system/sw/bin/systemctl

