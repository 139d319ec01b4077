# Where a link leads, only if it leads somewhere that exists (else empty): resolve_set's
# answer, printed.
resolve() { resolve_set "$1" && printf '%s\n' "$r_out"; }

# The directory the script started in, where resolve_set comes back to (a health command run
# later starts there, as it always did).
start_dir=${PWD:-/}

# r_out: $1 resolved as resolve prints it, empty when it does not exist (and then fails). A
# directory (a system, a generation's link) is resolved by the shell's own cd there and back,
# with no subshell: the status resolves a dozen of them.
resolve_set() {
  r_out=""
  [ -e "$1" ] || return 1
  case $1 in
    /*) if [ -d "$1" ] && cd -P -- "$1" 2>/dev/null; then
      r_out=$PWD
      cd -- "$start_dir" 2>/dev/null || cd /
      return 0
    fi ;;
  esac
  r_out=$(readlink -f "$1")
}

# The physical path of directory $1 (absolute), every link on the way followed, as readlink -f
# prints it; fails for anything else. By the shell's own cd in a subshell: no readlink started,
# where a status lists each generation's system.
physical_dir() {
  case $1 in /*) [ -d "$1" ] || return 1 ;; *) return 1 ;; esac
  (cd -P -- "$1" 2>/dev/null && printf '%s\n' "$PWD")
}

# A store path in canonical form: /nix/store/, 32 characters of Nix's base-32, "-" and a name of
# Nix's characters, nothing before or after (no "..", ".", "//", trailing part or second line).
STORE_PATH_RE='/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+._?=-]{1,211}'

# Whether $1 is a store path in canonical form. Nix checks a path by its text while the kernel
# follows every link and ".." on the way, so nothing else is taken where a path is checked.
# Read by the shell alone (no grep), as STORE_PATH_RE says: each activation checks several.
store_path_form() {
  case $1 in /nix/store/*) ;; *) return 1 ;; esac
  s_rest=${1#/nix/store/}
  s_name=${s_rest#????????????????????????????????-}
  s_hash=${s_rest%"-$s_name"}
  [ "$s_name" != "$s_rest" ] && [ ${#s_hash} -eq 32 ] && [ -n "$s_name" ] &&
    [ ${#s_name} -le 211 ] || return 1
  case $s_hash in *[!0-9abcdfghijklmnpqrsvwxyz]*) return 1 ;; esac
  case $s_name in *[!A-Za-z0-9+._?=-]*) return 1 ;; esac
}

# Whether store path $1 (in canonical form, present) resolves to itself: no link on the way or
# at its end, so that what runs from it is what Nix checked.
store_path_resolves() {
  s_real=$(physical_dir "$1") || s_real=$(readlink -f "$1" 2>/dev/null)
  [ "$s_real" = "$1" ]
}

# Epoch seconds. After clock_base (an activation, which asks the time at every step): the
# seconds since boot read by the shell (/proc/uptime) and the offset taken then, with no date
# started; else, or where /proc/uptime says nothing readable, date. now_set sets c_now with no
# subshell; now prints it.
c_offset=""
now_set() {
  if [ -n "$c_offset" ] && uptime_cs; then
    c_now=$(((c_cs + c_offset) / 100))
    return 0
  fi
  c_now=$(date +%s)
}
now() { now_set; printf '%s\n' "$c_now"; }

# c_cs: the hundredths of a second since boot, from /proc/uptime ("SECONDS.HH ..."); fails
# when it cannot be read so.
uptime_cs() {
  c_up=""
  { read -r c_up _ </proc/uptime; } 2>/dev/null || true
  case $c_up in [0-9]*.[0-9][0-9]) ;; *) return 1 ;; esac
  c_cs=${c_up%.*}${c_up#*.}
  digits "$c_cs" || return 1
  while case $c_cs in 0?*) true ;; *) false ;; esac; do c_cs=${c_cs#0}; done
}

# Takes the offset from the seconds since boot to the epoch, in hundredths (see now); nothing
# where date cannot say nanoseconds (not GNU date) or /proc/uptime is not there.
clock_base() {
  c_ns=$(date +%s%N 2>/dev/null) || return 0
  digits "$c_ns" && [ ${#c_ns} -gt 9 ] && uptime_cs || return 0
  c_offset=$((${c_ns%???????} - c_cs))
}

# Epoch seconds as UTC ISO 8601.
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || printf '%s' "$1"; }

# rm -f $1, started only when there is something to remove (most often there is none).
remove_file() {
  if [ -e "$1" ] || [ -L "$1" ]; then rm -f "$1"; fi
}

digits() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }

# Whole seconds without leading zeros (sh arithmetic reads 010 as octal): decimal_set sets d
# with no subshell; decimal prints it.
decimal_set() {
  d=$1
  while case $d in 0?*) ;; *) false ;; esac; do d=${d#0}; done
}
decimal() { decimal_set "$1"; printf '%s' "$d"; }

