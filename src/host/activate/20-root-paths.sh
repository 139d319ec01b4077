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
