
# --- Deltas (activate --delta-tool P; docs/deltas.md). Before the system is realised, the paths
# it lacks are rebuilt where they can be from deltas against paths of the running system's
# closure, into a binary cache on local disk that the realise asks first (Priority 1): Nix then
# checks each rebuilt path's signature and NAR hash itself, and takes whatever the deltas did
# not give from the substituters. The step never fails an activation: what it cannot do comes
# whole.

# The most paths the step looks for deltas of (the first in byte order), and the bases it tries
# for each (paths of the same package name in the running system's closure), weighing the first
# DELTA_MAX_PER_NAME paths of a name in byte order: past these, paths come whole. The build writes them (and DELTA_INFO_LIMIT) from
# src/cache/delta-caps.ts, whose values the deployer's pairs take too. The step takes at most
# half of what is left of the activation timeout, the rest is the realise's.
DELTA_MAX_PATHS=@DELTA_MAX_PATHS@ DELTA_MAX_BASES=@DELTA_MAX_BASES@
DELTA_MAX_PER_NAME=@DELTA_MAX_PER_NAME@
# Where the step works: on the store's disk (NARs can be large, /run is a tmpfs), one activation
# at a time (the lock), removed when the step's realise is over and on every failure.
DELTA_WORK=/nix/var/nixship/delta-work
# Seconds the delta paths' removal from the store may take (it waits for a garbage collection
# under way): short, since a failed activation's end (SETTLE_TIME) waits for it too.
DELTA_DELETE_TIME=10
# The largest delta-info and narinfo read (a narinfo lists its references: 64 KiB is thousands).
DELTA_INFO_LIMIT=@DELTA_INFO_LIMIT@ DELTA_NARINFO_LIMIT=65536
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

# Whether the zstd at $1 is 1.4.5 or newer, the first with --patch-from (`zstd -V` says
# "... v1.5.6, ..."): a delta tool a zstd of the host's own system stands for may be older.
zstd_patches() {
  z_version=$(timeout -k "$KILL_GRACE" 10 "$1" -V 2>/dev/null |
    sed -n 's/.* v\([0-9][0-9]*\)\.\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2 \3/p' | head -n 1)
  [ -n "$z_version" ] || return 1
  # shellcheck disable=SC2086 # three numbers, one a word
  set -- $z_version
  [ "$1" -gt 1 ] || { [ "$1" -eq 1 ] && { [ "$2" -gt 4 ] || { [ "$2" -eq 4 ] && [ "$3" -ge 5 ]; }; }; }
}

# The step's Nix runs keep their narinfo answers in a cache of the step's own ($x_dir/nix-cache:
# fresh, so nothing an earlier run was told is believed; removed with the step) and believe them
# for its hour. A host whose nix.conf keeps no positive answer (narinfo-cache-positive-ttl = 0)
# asked the cache again for each path as Nix came to fetch it, one round trip a path after
# another: 2.4-3.1 s for 43 deltas over a link of 50 ms (bench:delta), 0.2 s with this.
STEP_NARINFO_TTL=3600

# The store paths that `nix-store --realise --dry-run` (its output in file $1, Nix 2.8 or 2.26)
# says will be fetched, one a line.
fetched_paths() {
  awk '/will be fetched/ { f = 1; next } /^[^ ]/ { f = 0 } f { print $1 }' "$1" |
    LC_ALL=C grep -x -E -e "$STORE_PATH_RE" || true
}

# `nix-store --realise --dry-run` of the paths in file $1 from the substituters; what will be
# fetched into file $2. Fails when it could not be asked within the step's time (a path nothing
# has is only not listed). A narinfo that does not parse fails Nix's whole run: the paths are
# then asked in halves, so that a bad answer (a cache writer's, a delta's) costs its own path
# alone, which is logged with Nix's words.
dry_run_fetches() {
  d_out=$2
  : >"$d_out"
  cp "$1" "$x_dir/ask-0" || return 1
  d_next=0 d_end=1
  while [ "$d_next" -lt "$d_end" ]; do
    d_ask=$x_dir/ask-$d_next
    d_next=$((d_next + 1))
    [ -s "$d_ask" ] || continue
    r=$(x_left)
    [ "$r" -gt 0 ] || return 1
    set -f
    # shellcheck disable=SC2046 # one store path a word
    set -- $(cat "$d_ask")
    set +f
    bounded "$x_dir/dry-run" "$r" sh -c 'exec "$@" 2>&1' sh \
      env XDG_CACHE_HOME="$x_dir/nix-cache" nix-store --realise --dry-run "$@" \
      --option substituters "$subs" --option trusted-public-keys "$keys" \
      --option require-sigs true --option narinfo-cache-negative-ttl 0 \
      --option narinfo-cache-positive-ttl "$STEP_NARINFO_TTL"
    case $? in
    0) fetched_paths "$x_dir/dry-run" >>"$d_out" ;;
    124 | 137) return 1 ;;
    *)
      if [ $# -eq 1 ]; then
        log "deltas: $1 is not asked for: $(grep -m 1 '^error' "$x_dir/dry-run" | cut -c 1-300)"
      else
        d_half=$(($# / 2))
        head -n "$d_half" "$d_ask" >"$x_dir/ask-$d_end"
        tail -n +"$((d_half + 1))" "$d_ask" >"$x_dir/ask-$((d_end + 1))"
        d_end=$((d_end + 2))
      fi
      ;;
    esac
    rm -f "$d_ask"
  done
}

# The pairs to ask deltas for, "TARGET BASE" lines: for each path of file $1 (the first
# DELTA_MAX_PATHS in byte order), the paths of file $2 of its package name (parseDrvName's: up to
# the first "-" not followed by a letter), at most DELTA_MAX_BASES, in the deployer's order
# (deltaBasesOf in src/cache/delta-bases.ts): the same whole name first, then the version sharing
# the longest prefix with the target's, then the longest suffix, then by base name. (The first
# DELTA_MAX_PER_NAME paths of a name in byte order are weighed.) Both files are sorted first, so
# the caps take the paths the deployer's pairs take (deltaPairsFor).
delta_pairs() {
  { LC_ALL=C sort -u "$2"; printf '%s\n' --; LC_ALL=C sort -u "$1"; } |
    LC_ALL=C awk -v max_paths="$DELTA_MAX_PATHS" -v max_bases="$DELTA_MAX_BASES" \
    -v max_per_name="$DELTA_MAX_PER_NAME" '
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
!sep && $0 == "--" { sep = 1; next }
!sep {
n = substr($0, 45); p = pname(n)
if (count[p] < max_per_name) { count[p]++; path[p, count[p]] = $0; full[p, count[p]] = n; ver[p, count[p]] = pver(n) }
next
}
++targets <= max_paths {
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
}'
}

# The delta paths of the pairs in file $1 (docs/deltas.md: deltaHashPart), "DELTA TARGET BASE"
# lines into file $2: the hash part is the first 32 characters of the nix32 form of
# sha256("nixship-delta-v1:<target's base name>:<base's base name>"). Each seed is a file the
# shell writes, and one sha256sum hashes them all: no process a pair (a system has thousands).
delta_candidates() {
  c_pairs=$1 c_out=$2 c_n=0
  mkdir -p "$x_dir/seed" || return 1
  while read -r c_t c_b; do
    c_n=$((c_n + 1))
    printf 'nixship-delta-v1:%s:%s' "${c_t#/nix/store/}" "${c_b#/nix/store/}" >"$x_dir/seed/$c_n"
  done <"$c_pairs"
  : >"$x_dir/seeds"
  if [ "$c_n" -gt 0 ]; then
    # In the pairs' order; no file name has a blank, so each line's first word is its hash.
    (cd "$x_dir/seed" && seq 1 "$c_n" | xargs sha256sum) | cut -d ' ' -f 1 >"$x_dir/seeds" ||
      return 1
  fi
  [ "$(wc -l <"$x_dir/seeds")" = "$c_n" ] || return 1
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
# logged, with why, and listed in x_dir/failed. Reads only the deltas' small files, each within
# its limit: one `wc` sizes them all and one awk reads them (no process a delta: a mass rebuild
# has thousands).
delta_checked() {
  : >"$2"
  : >"$x_dir/check"
  : >"$x_dir/check-failed"
  while read -r c_d c_t c_b; do
    if [ ! -d "$c_d" ]; then
      printf '%s %s %s\n' "$c_t" "$c_b" "the delta was not fetched" >>"$x_dir/check-failed"
    elif [ -f "$c_d/delta-info" ] && [ -f "$c_d/narinfo" ] && [ -f "$c_d/delta.zst" ]; then
      printf '%s %s %s\n' "$c_d" "$c_t" "$c_b" >>"$x_dir/check"
    else
      printf '%s %s %s\n' "$c_t" "$c_b" "its delta-info or narinfo is too large or missing" \
        >>"$x_dir/check-failed"
    fi
  done <"$1"
  if [ -s "$x_dir/check" ]; then
    # Sizes from the files' status (wc -c does not read a regular file), "SIZE FILE" lines.
    awk '{ print $1 "/delta-info"; print $1 "/narinfo" }' "$x_dir/check" |
      xargs wc -c >"$x_dir/check-sizes" 2>/dev/null || true
    : >"$x_dir/check-refused"
    if LC_ALL=C awk -v sizes="$x_dir/check-sizes" -v failed="$x_dir/check-refused" \
      -v info_limit="$DELTA_INFO_LIMIT" -v narinfo_limit="$DELTA_NARINFO_LIMIT" '
function nix32(h) { return h ~ /^sha256:[0-9abcdfghijklmnpqrsvwxyz]+$/ && length(h) == 59 }
function size(n) { return n ~ /^[0-9]+$/ && length(n) <= 15 }
function fail(why) { print $2, $3, why >>failed }
FILENAME == sizes { if (NF == 2) bytes[$2] = $1; next }
{
info = $1 "/delta-info"; narinfo = $1 "/narinfo"
if (!(info in bytes) || !(narinfo in bytes) || bytes[info] + 0 > info_limit || bytes[narinfo] + 0 > narinfo_limit) {
fail("its delta-info or narinfo is too large or missing")
next
}
split("", f); split("", g); bad = 0; n = 0
while ((r = getline line < info) > 0) {
if (line == "") continue
i = index(line, ": "); k = substr(line, 1, i - 1)
if (i < 2 || (k in f)) bad = 1
f[k] = substr(line, i + 2); n++
}
if (r < 0) bad = 1
close(info)
while ((r = getline line < narinfo) > 0) { i = index(line, ": "); if (i > 1) g[substr(line, 1, i - 1)] = substr(line, i + 2) }
if (r < 0) bad = 1
close(narinfo)
if (bad || n != 5 || f["Engine"] != "zstd-patch" || f["Target"] != $2 || f["Base"] != $3 ||
!nix32(f["BaseNarHash"]) || !size(f["BaseNarSize"]) || g["StorePath"] != $2 ||
!nix32(g["NarHash"]) || !size(g["NarSize"])) {
fail("its delta-info is not of this pair, or its narinfo not the target'"'"'s, or malformed")
next
}
print $1, $2, $3, f["BaseNarHash"], f["BaseNarSize"], g["NarHash"], g["NarSize"]
}' "$x_dir/check-sizes" "$x_dir/check" >"$2"; then
      cat "$x_dir/check-refused" >>"$x_dir/check-failed"
    else
      # The reading itself failed: none of these deltas is taken.
      : >"$2"
      cut -d ' ' -f 2,3 "$x_dir/check" | sed 's/$/ its delta-info or narinfo could not be read/' \
        >>"$x_dir/check-failed"
    fi
  fi
  while read -r c_t c_b c_why; do
    log "deltas: $c_t comes whole: the delta from $c_b: $c_why"
    printf '%s\n' "$c_t" >>"$x_dir/failed"
  done <"$x_dir/check-failed"
}

# Rebuilds the NAR of each delta of file $1 (delta_checked's lines) into the local cache, or
# logs why not and lists its target in x_dir/failed: the base's NAR hash and size as this store
# records them must be BaseNarHash and BaseNarSize (else another base), the base's NAR as
# `nix-store --export` writes it must be BaseNarSize bytes (else the store's copy changed; the
# export itself refuses a path whose bytes no longer have their recorded hash), and the NAR zstd
# rebuilds (under a file size limit a little above NarSize: a delta that expands without bound
# stops there) must have the narinfo's NarHash. Its narinfo is the signed fields and signatures
# of the delta's copy, with URL, Compression, FileHash and FileSize of its own. The store and nix-hash
# are asked once for all the deltas; the disk they may take is decided first, in order; then
# the deltas are applied DELTA_APPLY_JOBS at a time (at most one a core), all of them one
# bounded process group (DELTA_APPLY_SH), each job reading its bases from one export stream.
delta_rebuild() {
  [ -s "$1" ] || return 0
  r=$(x_left)
  x_why="the store did not give the bases' hashes and sizes, or nix-hash did not convert the hashes, in time"
  if [ "$r" -le 0 ] || ! delta_hashes "$1" "$x_dir/hashes" "$r"; then
    cut -d ' ' -f 2,3 "$1" | while read -r a_t a_b; do
      log "deltas: $a_t comes whole: the delta from $a_b: $x_why"
      printf '%s\n' "$a_t" >>"$x_dir/failed"
    done
    return 0
  fi
  a_jobs=$(nproc 2>/dev/null) || a_jobs=1
  digits "$a_jobs" && [ "$a_jobs" -ge 1 ] || a_jobs=1
  [ "$a_jobs" -le "$DELTA_APPLY_JOBS" ] || a_jobs=$DELTA_APPLY_JOBS
  a_free=$(df -Pk "$DELTA_WORK" 2>/dev/null | awk 'NR == 2 { print $4 }')
  digits "$a_free" || a_free=0
  a_base_max=0
  : >"$x_dir/todo"
  while read -r a_d a_t a_b _ a_base_size a_hash a_size a_hex a_base_hex a_stored a_stored_size a_meta; do
    x_why="the base's NAR hash or size in this store is not the delta's BaseNarHash and BaseNarSize (another base)"
    if [ "$a_stored" = "$a_base_hex" ] && [ "$a_stored_size" = "$a_base_size" ]; then
      # The rebuilt NARs so far and this one, and a base's dump for each job at once.
      a_max=$a_base_max
      [ "$a_base_size" -le "$a_max" ] || a_max=$a_base_size
      x_why="no room: the rebuilt NARs would take more than half the free space of $DELTA_WORK"
      if [ $((x_room + a_size + a_jobs * a_max)) -le $((a_free * 512)) ]; then
        x_room=$((x_room + a_size)) a_base_max=$a_max
        printf '%s %s %s %s %s %s %s %s\n' "$a_d" "$a_t" "$a_b" "$a_base_size" "$a_hash" "$a_size" \
          "$a_hex" "$a_meta" >>"$x_dir/todo"
        continue
      fi
    fi
    log "deltas: $a_t comes whole: the delta from $a_b: $x_why"
    printf '%s\n' "$a_t" >>"$x_dir/failed"
  done <"$x_dir/hashes"
  [ -s "$x_dir/todo" ] || return 0
  r=$(x_left)
  if [ "$r" -gt 0 ]; then
    log "deltas: applying $(wc -l <"$x_dir/todo") of them, $a_jobs at a time"
    delta_exports "$x_dir/todo" "$x_dir/base-refs" "$a_jobs" >"$x_dir/jobs"
    bounded log "$r" sh -c "$DELTA_APPLY_SH" sh "$x_zstd" "$x_dir" "$a_jobs" "$DELTA_NARINFO_AWK"
  fi
  cat "$x_dir"/job*/applied >>"$x_dir/applied" 2>/dev/null
  cat "$x_dir"/job*/failed 2>/dev/null | while read -r a_t a_b a_why; do
    log "deltas: $a_t comes whole: the delta from $a_b: $a_why"
    printf '%s\n' "$a_t" >>"$x_dir/failed"
  done
  # What a job did not get to (the step's time ran out) comes whole too, its NAR's narinfo (one
  # moved in as the job was stopped) taken out of the cache.
  LC_ALL=C sort -u "$x_dir/applied" "$x_dir/failed" >"$x_dir/settled"
  cut -d ' ' -f 2,3 "$x_dir/todo" | LC_ALL=C sort | LC_ALL=C join -v 1 - "$x_dir/settled" |
    while read -r a_t a_b; do
      a_part=${a_t#/nix/store/}
      rm -f "$x_dir/cache/${a_part%%-*}.narinfo"
      log "deltas: $a_t comes whole: the delta from $a_b: zstd could not apply it in time"
      printf '%s\n' "$a_t" >>"$x_dir/failed"
    done
  rm -rf "$x_dir"/job*
}

# To each line of file $1 (delta_checked's), the target's NAR hash and the base's BaseNarHash in
# hex, then what this store records of the base: its NAR hash in hex, its NAR size, and the
# bytes `nix-store --export` writes between its NAR and the next path's (export_meta), into
# file $2; the bases' references among themselves, "BASE REFERENCE" lines, into $x_dir/base-refs.
# One `nix-store --dump-db` and one `nix-hash` for all, within $3 seconds.
delta_hashes() {
  h_in=$1 h_out=$2 h_secs=$3
  set -f
  # shellcheck disable=SC2046 # one store path a word
  set -- $(cut -d ' ' -f 3 "$h_in" | LC_ALL=C sort -u)
  set +f
  bounded "$x_dir/registration" "$h_secs" nix-store --dump-db "$@" || return 1
  set -f
  # shellcheck disable=SC2046 # one hash a word
  set -- $(awk '{ print substr($6, 8) }' "$h_in") $(awk '{ print substr($4, 8) }' "$h_in")
  set +f
  r=$(x_left)
  [ "$r" -gt 0 ] && bounded "$x_dir/hex" "$r" nix-hash --type sha256 --to-base16 "$@" || return 1
  h_n=$(wc -l <"$h_in")
  [ "$(wc -l <"$x_dir/hex")" = $((2 * h_n)) ] || return 1
  LC_ALL=C awk -v n="$h_n" -v refs="$x_dir/base-refs" "$EXPORT_META_AWK"'
FNR == 1 { file++ }
file == 1 { registration(); next }
file == 2 { hex[FNR] = $1; next }
file == 3 {
if (!($3 in size) || hex[FNR] == "" || hex[FNR + n] == "") exit 1
print $0, hex[FNR], hex[FNR + n], narhash[$3], size[$3], meta[$3]
}
END {
printf "" >refs
for (k in related) print k >refs
}' "$x_dir/registration" "$x_dir/hex" "$h_in" >"$h_out" || return 1
  [ "$(wc -l <"$h_out")" = "$h_n" ]
}

# Reads `nix-store --dump-db PATHS`' registration (each path: its name, NAR hash in hex, NAR
# size, deriver or an empty line, the number of references, the references) into narhash[P],
# size[P], meta[P] and related["P R"] (P references R, both listed, R not P). meta[P] is what
# `nix-store --export` writes after P's NAR up to the next path's NAR, as Nix 2.8 and 2.26 both
# write it (each number 8 bytes, each string its length in 8 bytes and itself padded to 8): the
# export marker, P, its references, its deriver, a 0 (no signature), and the next path's 1 (or
# the stream's closing 0).
# shellcheck disable=SC2016 # awk's
EXPORT_META_AWK='
function padded(s) { return 8 + int((length(s) + 7) / 8) * 8 }
function registration() {
if (st == 0) { p = $0; listed[p]; meta[p] = 8 + padded(p) + 8 + 8 + 8; st = 1; return }
if (st == 1) { narhash[p] = $0; st = 2; return }
if (st == 2) { size[p] = $0; st = 3; return }
if (st == 3) { meta[p] += padded($0); st = 4; return }
if (st == 4) { left = $0 + 0; st = left > 0 ? 5 : 0; return }
meta[p] += padded($0)
if ($0 != p) ref[p, ++nref[p]] = $0
if (--left == 0) st = 0
}
END { for (q in nref) for (k = 1; k <= nref[q]; k++) if (ref[q, k] in listed) related[q " " ref[q, k]] }
'

# Which job applies each line of the todo file $1 ("DELTA TARGET BASE BASESIZE HASH SIZE HEX
# META" lines), and in which of its exports, for $3 jobs: "JOB EXPORT" before each line, the
# lines in the order of their bases. Each export is one `nix-store --export` of its lines'
# bases, which Nix writes in the order of their paths when none of them references another (it
# sorts the paths it exports so that references come first): so an export holds a base once, and
# no two bases of which one references the other ("BASE REFERENCE" lines of file $2).
delta_exports() {
  LC_ALL=C sort -k 3,3 "$1" | LC_ALL=C awk -v jobs="$3" -v related="$2" '
FILENAME == related { refs[$1, ++n[$1]] = $2; back[$2, ++m[$2]] = $1; next }
{
job = (line++) % jobs; b = $3
for (e = 1; ; e++) {
if ((job, e, b) in holds) continue
clash = 0
for (k = 1; k <= n[b] && !clash; k++) if ((job, e, refs[b, k]) in holds) clash = 1
for (k = 1; k <= m[b] && !clash; k++) if ((job, e, back[b, k]) in holds) clash = 1
if (!clash) break
}
holds[job, e, b]
print job, e, $0
}' "$2" -
}

# The most deltas applied at once (and never more than the host's cores): each takes a core,
# and zstd's memory, about its base's and target's NAR sizes.
DELTA_APPLY_JOBS=4

# Applies the deltas of file $2/jobs (delta_exports' lines: "JOB EXPORT DELTA TARGET BASE
# BASESIZE HASH SIZE HEX META"), $3 jobs at once, with the zstd $1, each NAR rebuilt into the
# local cache $2/cache and its target listed in $2/jobI/applied, or "TARGET BASE WHY" in
# $2/jobI/failed. Each export of a job is one `nix-store --export` of its bases, read as a
# stream: each base's NAR is cut from it (by its size, then its export_meta bytes skipped) into
# the job's one base file (zstd's --patch-from reads a file, not a pipe), which the next base
# overwrites, while the export waits; no process is started per base to dump it. zstd writes
# each NAR into the cache itself, under a file size limit a little above its NarSize (a delta
# that expands without bound is stopped there; the limit is in 512-byte blocks, 1024 in a bash
# that is not POSIX, still a bound). Once a job has applied its deltas, one `nix-hash` hashes
# all its NARs (no pipe through a hashing process a path: that cost twice the applying) and
# DELTA_NARINFO_AWK ($4) writes the narinfos of those with the narinfo's NarHash (a NAR of
# another size has another hash) beside the cache, moved in together after: the realise (after
# the step) finds a narinfo only for a NAR whole and checked; the others' NARs go. A delta
# costs its job four processes: the base's cut, the skip past its export metadata, its size's
# check, and zstd.
# Written flush left: the SSM document's compacted copy drops lines' leading blanks.
# shellcheck disable=SC2016 # expanded by that sh
DELTA_APPLY_SH='
z=$1 dir=$2 jobs=$3 narinfo_awk=$4 i=0
while [ "$i" -lt "$jobs" ]; do
w=$dir/job$i
mkdir -p "$w/narinfo" && : >"$w/applied" && : >"$w/failed" && : >"$w/rebuilt" || exit 1
(
awk -v i="$i" "\$1 == i { print \$2 }" "$dir/jobs" | sort -n -u | while read -r e; do
awk -v i="$i" -v e="$e" "\$1 == i && \$2 == e" "$dir/jobs" | cut -d " " -f 3- >"$w/lines"
set -f
set -- $(cut -d " " -f 3 "$w/lines")
set +f
nix-store --export "$@" | (
exec 4<&0 </dev/null
head -c 8 <&4 >/dev/null
while read -r d t b bsize hash size hex meta; do
dd bs=1048576 count="$bsize" iflag=count_bytes,fullblock status=none <&4 >"$w/base.nar"
head -c "$meta" <&4 >/dev/null
part=${t#/nix/store/}
part=${part%%-*}
nar=$dir/cache/nar/$part.nar
why="the base NAR is not the delta BaseNarSize (the store copy changed, or its export failed)"
if [ "$(wc -c <"$w/base.nar")" = "$bsize" ]; then
why="zstd could not apply it"
if (ulimit -f "$((size / 512 + 2))" && exec "$z" -d -q -f --memory="$(((size + bsize) / 1048576 + 2))MB" \
--patch-from="$w/base.nar" "$d/delta.zst" -o "$nar"); then
printf "%s %s %s %s %s %s %s\n" "$d" "$t" "$b" "$hash" "$size" "$hex" "$part" >>"$w/rebuilt"
why=""
fi
fi
if [ -n "$why" ]; then
rm -f "$nar"
printf "%s %s %s\n" "$t" "$b" "$why" >>"$w/failed"
fi
done <"$w/lines"
rm -f "$w/base.nar"
cat <&4 >/dev/null
)
done
[ -s "$w/rebuilt" ] || exit 0
set -f
set -- $(awk -v dir="$dir" "{ print dir \"/cache/nar/\" \$7 \".nar\" }" "$w/rebuilt")
set +f
nix-hash --flat --type sha256 "$@" >"$w/sums" || : >"$w/sums"
: >"$w/good" && : >"$w/bad" || exit 1
awk -v w="$w" -v dir="$dir" -v sums="$w/sums" "$narinfo_awk" "$w/sums" "$w/rebuilt" || exit 1
set -f
set -- $(cat "$w/bad")
set +f
[ $# -eq 0 ] || rm -f "$@"
set -- "$w"/narinfo/*.narinfo
[ ! -e "$1" ] || mv -f "$@" "$dir/cache/" || exit 1
cat "$w/good" >>"$w/applied"
) &
i=$((i + 1))
done
wait
'

# For DELTA_APPLY_SH: reads a job's sums (file `sums`: nix-hash's lines, in order; empty when
# nix-hash failed, by its name so that an empty one is still told apart) and its rebuilt NARs ("DELTA
# TARGET BASE HASH SIZE HEX PART" lines); for each NAR with the narinfo's NarHash, writes its
# narinfo into w/narinfo (the delta's copy of the target's: its signed fields and signatures
# alone, whatever else a delta published before holds, with URL, Compression, FileHash and
# FileSize of its own: no signature covers them) and lists its target in w/good; lists each
# other one as "TARGET BASE WHY" in w/failed and its NAR in w/bad.
# shellcheck disable=SC2016 # awk's
DELTA_NARINFO_AWK='
FILENAME == sums { sum[FNR] = $1; next }
{
nar = dir "/cache/nar/" $7 ".nar"
if (sum[FNR] == "" || sum[FNR] != $6) {
why = sum[FNR] == "" ? "its NAR could not be hashed" : "the NAR zstd gives is not the narinfo NarHash"
print $2, $3, why >>(w "/failed")
print nar >>(w "/bad")
next
}
out = w "/narinfo/" $7 ".narinfo"
while ((getline line < ($1 "/narinfo")) > 0)
if (line ~ /^(StorePath|NarHash|NarSize|References|Sig): /) print line >out
close($1 "/narinfo")
print "URL: nar/" $7 ".nar" >out
print "Compression: none" >out
print "FileHash: " $4 >out
print "FileSize: " $5 >out
close(out)
print $2 >>(w "/good")
}
'

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
  zstd_patches "$x_zstd" ||
    { delta_skip "$x_zstd is not zstd 1.4.5 or newer (the first with --patch-from)"; return 0; }
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
    # (No root: the realise that follows roots what it keeps; nor Nix's warning of that.)
    bounded quiet "$r" env XDG_CACHE_HOME="$x_dir/nix-cache" nix-store --realise --keep-going \
      --no-gc-warning "$@" \
      --option substituters "$subs" --option trusted-public-keys "$keys" \
      --option require-sigs true --option narinfo-cache-negative-ttl 0 \
      --option narinfo-cache-positive-ttl "$STEP_NARINFO_TTL"
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
  remaining_set
  [ "$r" -le 60 ] || r=60
  cut -d ' ' -f 1 "$x_dir/picked" | while read -r f_d; do
    [ ! -d "$f_d" ] || printf '%s\n' "$f_d"
  done >"$x_dir/deltas-fetched"
  LC_ALL=C sort -u "$x_dir/applied" >"$x_dir/applied-sorted"
  LC_ALL=C sort -u "$x_dir/fetch" | LC_ALL=C comm -23 - "$x_dir/applied-sorted" >"$x_dir/whole"
  f_paths=$(wc -l <"$x_dir/applied-sorted") f_whole=$(wc -l <"$x_dir/whole")
  f_failed=$(wc -l <"$x_dir/failed")
  # One Nix run sizes the three lists (the sizes in their order, summed list by list); where
  # that fails (a path not valid after a failed realise), each list is sized alone.
  cat "$x_dir/deltas-fetched" "$x_dir/applied-sorted" "$x_dir/whole" >"$x_dir/sized"
  : >"$x_dir/sizes"
  if nar_bytes "$x_dir/sized" "$r" >/dev/null && f_sums=$(wc -l <"$x_dir/deltas-fetched" &&
    wc -l <"$x_dir/applied-sorted" && cat "$x_dir/sizes") && f_sums=$(printf '%s\n' "$f_sums" |
    awk 'NR == 1 { a = $1; next } NR == 2 { b = $1; next }
{ i++; if (i <= a) x += $1; else if (i <= a + b) y += $1; else z += $1 }
END { printf "%.0f %.0f %.0f", x, y, z }'); then
    set -f
    # shellcheck disable=SC2086 # three numbers
    set -- $f_sums
    set +f
    f_bytes=$1 f_nar=$2 f_whole_bytes=$3
  else
    f_bytes=$(nar_bytes "$x_dir/deltas-fetched" "$r") || f_bytes=""
    f_nar=$(nar_bytes "$x_dir/applied-sorted" "$r") || f_nar=""
    f_whole_bytes=$(nar_bytes "$x_dir/whole" "$r") || f_whole_bytes=""
  fi
  log "deltas: $f_paths paths came by delta (${f_bytes:-?} bytes of deltas for ${f_nar:-?} bytes of NAR), $f_whole whole (${f_whole_bytes:-?} bytes of NAR); $f_failed deltas fetched did not apply"
  x_json=$(printf '{"paths":%s,"bytes":%s,"narBytes":%s,"wholePaths":%s,"wholeNarBytes":%s,"failed":%s}' \
    "$f_paths" "$(json_num "$f_bytes")" "$(json_num "$f_nar")" "$f_whole" \
    "$(json_num "$f_whole_bytes")" "$f_failed")
  delta_discard
}

# The realise with the delta step's local cache failed (realise_path): nothing it holds is
# used, every path comes whole from the substituters, and the report says so.
delta_abandoned() {
  log "deltas: the realise with the paths deltas rebuilt failed (the log above says why): all of them come whole"
  [ -z "$x_dir" ] || { : >"$x_dir/applied"; rm -rf "$x_dir/cache"; }
  x_cache=""
}

# The delta step's report in the activation's answer: ',"delta":{...}', or nothing.
delta_json() { [ -z "$x_json" ] || printf ',"delta":%s' "$x_json"; }
