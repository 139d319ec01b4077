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
  remaining_set
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
  remaining_set
  [ "$r" -gt 0 ] || return 0
  pinned_signed "$1" && return 1
  p_why="$2$1 is not signed by a key this host pins (its closure must be)"
  # Fetched before the keys were rotated, a path keeps here the signatures it had then, and a
  # valid path is never fetched again: ask the pinned substituters for the signatures they hold
  # now (a cache re-signed with the new key). Nix takes only those of a NAR with the same hash,
  # size and references, and only a pinned key's signature counts, as before.
  [ -n "$pinned_subs" ] || return 0
  for p_sub in $pinned_subs; do
    remaining_set
    [ "$r" -gt 0 ] || return 0
    bounded quiet "$r" nix --extra-experimental-features nix-command store copy-sigs \
      --substituter "$p_sub" --recursive "$1" 2>/dev/null || :
  done
  remaining_set
  [ "$r" -gt 0 ] || return 0
  p_why="$2$1 is not signed by a key this host pins (its closure must be), here or at the pinned substituters"
  ! pinned_signed "$1"
}

# Whether store path $1 and its closure carry a pinned key's signature, within what is left of
# the deadline.
pinned_signed() {
  remaining_set
  [ "$r" -gt 0 ] || return 1
  bounded quiet "$r" nix --extra-experimental-features nix-command store verify --recursive \
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
    u_check=${u_check#*:}
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

# With pinned trust, whether system $1 lacks the installed activation script (sw/bin/
# nixship-activate, which nixship's NixOS module puts in a system): switching to it would
# unpin the host, and the next caller's trust would be taken (the SSM document runs its own
# script where the running system has none). Why is in p_why.
unpins() {
  [ "$pinned" = 1 ] && [ ! -x "$1/sw/bin/nixship-activate" ] || return 1
  p_why="$1 has no sw/bin/nixship-activate (nixship's nixosModules.host): this host's trust is pinned, and a system without it would unpin the host; build every system of a pinned host with the module"
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

