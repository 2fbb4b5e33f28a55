# ---- Tapline look-back step -------------------------------------------------------------------
# Source: ssm-documents/lookback-step.sh (tested standalone by test/lab/lookback-*.test.ts; the
# capture document carries the same functions). Bash, no dollar-brace anywhere (the Serverless
# Framework would read it as a variable when the document is packaged).
#
# When SSM_LookbackSeconds > 0 it freezes the standby ring (ssm-documents/tapline-standby.yml) at
# "now": asks the ring's supervisor to rotate (through rotate.request; it lets tcpdump take every
# packet the kernel holds for it, stops it with SIGINT so it closes the current file, restarts it
# and answers in rotations.log), picks the closed ring files whose [start, end] overlaps
# [now - LookbackSeconds, now] (start = the earlier of the name's epoch and the first packet's
# timestamp; end = mtime), and copies them out of the ring so it cannot rotate them away. Then it
# uploads each copy, hashed, with SSE-KMS and the host hash as its S3 SHA-256 checksum, to
# pcaps/<CaptureId>/<InstanceId>/lookback-<start>-<n>.pcap with lookback=true and the file's real
# time range in its metadata, deleting a copy only after its upload succeeded.
#
# Phases (the capture document freezes right after its own tcpdump started, so the forward
# capture overlaps the rotation, uploads one look-back file per turn of its upload loop, and
# finishes before printing its report):
#   tl_lb_freeze INSTANCE_ID AWS_CLI   rotate, select, copy (both arguments may be empty)
#   tl_lb_upload_pending [N]           upload up to N staged copies (all when N is absent)
#   tl_lb_finish                       anything not uploaded goes to WorkDir/unsent; sets the JSON
#   tl_lb_run INSTANCE_ID AWS_CLI      all three (standalone use)
# In (environment, as the SSM agent sets it): SSM_LookbackSeconds, SSM_RingDirectory (default
# /var/lib/tapline/ring), SSM_CaptureId, SSM_Bucket, SSM_KmsKeyId, SSM_Region, SSM_EndpointUrl,
# SSM_UploadAttempts, SSM_MinFreeMegabytes, SSM_WorkDir, AWS_SSM_INSTANCE_ID.
# Out (shell variables): LOOKBACK_JSON (one JSON object for the final report), LOOKBACK_FILES_JSON
# (comma-joined entries in the capture report's "files" shape, lookback:true),
# LOOKBACK_UNSENT_JSON, LOOKBACK_FILE_COUNT, LOOKBACK_BYTES, LOOKBACK_FAILED (1 when something
# could not be sent). It never exits the script and never prevents the forward capture: every
# problem is recorded in LOOKBACK_JSON's "errors". It writes only to stderr.
LOOKBACK_JSON='{"status":"not-requested"}'
LOOKBACK_FILES_JSON=""
LOOKBACK_UNSENT_JSON=""
LOOKBACK_FILE_COUNT=0
LOOKBACK_BYTES=0
LOOKBACK_FAILED=0
TL_LB_ACTIVE=0
TL_LB_STATUS=""
TL_LB_ERRORS=""
TL_LB_SECONDS=0
TL_LB_NOW=0
TL_LB_ASKED=0
TL_LB_WINDOW_START=0
TL_LB_RING=""
TL_LB_RING_STATE=absent
TL_LB_ROTATED=false
TL_LB_PENDING=""
TL_LB_STAGE=""
TL_LB_UNSENT_DIR=""
TL_LB_AWS=""
TL_LB_CAPTURE_ID=""
TL_LB_INSTANCE=""
TL_LB_BUCKET=""
TL_LB_KMS=""
TL_LB_REGION=""
TL_LB_ENDPOINT=""
TL_LB_ATTEMPTS=5
TL_LB_SPANS=""
TL_LB_SILENT=0

tl_lb_esc() { printf '%s' "$1" | tr -cd '\040-\176' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
tl_lb_err() {
  echo "tapline: look-back: $1" >&2
  if [ -n "$TL_LB_ERRORS" ]; then TL_LB_ERRORS="$TL_LB_ERRORS,"; fi
  TL_LB_ERRORS="$TL_LB_ERRORS\"$(tl_lb_esc "$1")\""
}
tl_lb_state() { sed -n "s/^$1=\([0-9A-Za-z_.-]*\)$/\1/p" "$TL_LB_RING/state.env" 2>/dev/null | tail -n 1 || true; }
# tl_lb_is PID supervisor|tcpdump: alive, not a zombie, and the process we think it is (this
# ring's supervisor, or a tcpdump writing this ring's files: a recycled pid may be another's).
tl_lb_is() {
  local pid=$1 cmd _pid _comm state
  [[ $pid =~ ^[1-9][0-9]{0,9}$ ]] || return 1
  read -r _pid _comm state _ 2>/dev/null <"/proc/$pid/stat" || return 1
  [ "$state" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  case $2 in
    supervisor) [[ $cmd == *" $TL_LB_RING/supervisor.sh $TL_LB_RING "* ]] ;;
    tcpdump) [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tcpdump ] && [[ $cmd == *" $TL_LB_RING/files/ring-"* ]] ;;
    *) return 1 ;;
  esac
}
# tl_lb_first_packet FILE: the first packet's timestamp from the pcap record header, or nothing.
tl_lb_first_packet() {
  local magic fields
  [ "$(stat -c %s -- "$1" 2>/dev/null || echo 0)" -ge 40 ] || return 0
  magic=$(od -An -t x4 -N 4 -- "$1" | tr -d ' ')
  fields=$(od -An -t u4 -j 24 -N 8 -- "$1" | tr -s ' ')
  case $magic in
    a1b2c3d4) printf '%s' "$fields" | awk '{ printf "%s.%06d", $1, $2 }' ;;
    a1b23c4d) printf '%s' "$fields" | awk '{ printf "%s.%06d", $1, int($2 / 1000) }' ;;
  esac
}

tl_lb_freeze() {
  local instance=$1 aws=$2 files min_free work_dir spid tpid token started i list
  local closed_before epoch suffix name size start end selected="" total_bytes free_mb method candidate
  TL_LB_ACTIVE=1
  # The window is [ASKED - LookbackSeconds, ASKED], to the microsecond: a file holding packets
  # from earlier in the request's second belongs to it. NOW is the request's whole second, to
  # compare with ring file names.
  TL_LB_ASKED=$(date +%s.%6N)
  TL_LB_NOW=$(printf '%s' "$TL_LB_ASKED" | cut -d . -f 1)
  TL_LB_WINDOW_START=$TL_LB_ASKED
  TL_LB_SECONDS=$(printenv SSM_LookbackSeconds || echo 0)
  TL_LB_RING=$(printenv SSM_RingDirectory || echo /var/lib/tapline/ring)
  if ! [[ $TL_LB_SECONDS =~ ^(0|[1-9][0-9]{0,4})$ ]]; then
    TL_LB_SECONDS=0
    tl_lb_err "LookbackSeconds does not match its allowed pattern"
    TL_LB_STATUS=failed
    return 0
  fi
  TL_LB_WINDOW_START=$(awk -v a="$TL_LB_ASKED" -v s="$TL_LB_SECONDS" 'BEGIN { printf "%.6f", a - s }')
  if ! [[ $TL_LB_RING =~ ^/(var/lib|var/tmp|tmp|opt)/tapline[A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)*$ ]]; then
    TL_LB_RING=""
    tl_lb_err "RingDirectory does not match its allowed pattern"
    TL_LB_STATUS=failed
    return 0
  fi
  TL_LB_CAPTURE_ID=$(printenv SSM_CaptureId || true)
  TL_LB_BUCKET=$(printenv SSM_Bucket || true)
  TL_LB_KMS=$(printenv SSM_KmsKeyId || true)
  TL_LB_REGION=$(printenv SSM_Region || true)
  TL_LB_ENDPOINT=$(printenv SSM_EndpointUrl || true)
  TL_LB_ATTEMPTS=$(printenv SSM_UploadAttempts || echo 5)
  min_free=$(printenv SSM_MinFreeMegabytes || echo 1024)
  work_dir=$(printenv SSM_WorkDir || echo /var/lib/tapline)
  TL_LB_INSTANCE=$instance
  if [ -z "$TL_LB_INSTANCE" ]; then TL_LB_INSTANCE=$(printenv AWS_SSM_INSTANCE_ID || true); fi
  [[ $TL_LB_CAPTURE_ID =~ ^cap-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$ ]] || tl_lb_err "CaptureId does not match its allowed pattern"
  [[ $TL_LB_BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || tl_lb_err "Bucket does not match its allowed pattern"
  [[ $TL_LB_KMS =~ ^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$ ]] || tl_lb_err "KmsKeyId does not match its allowed pattern"
  [[ $TL_LB_REGION =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]] || tl_lb_err "Region does not match its allowed pattern"
  [[ $TL_LB_ENDPOINT =~ ^$|^http://127\.0\.0\.1:[1-9][0-9]{1,4}$|^https://[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com(\.cn)?$ ]] || tl_lb_err "EndpointUrl does not match its allowed pattern"
  [[ $TL_LB_ATTEMPTS =~ ^[1-9]$ ]] || tl_lb_err "UploadAttempts does not match its allowed pattern"
  [[ $min_free =~ ^(0|[1-9][0-9]{0,6})$ ]] || tl_lb_err "MinFreeMegabytes does not match its allowed pattern"
  [[ $work_dir =~ ^/(var/lib|var/tmp|tmp|opt)/tapline[A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)*$ ]] || tl_lb_err "WorkDir does not match its allowed pattern"
  [[ $TL_LB_INSTANCE =~ ^(i|mi)-[0-9a-f]{8,17}$ ]] || tl_lb_err "cannot tell which instance this is"
  if [ -n "$TL_LB_ERRORS" ]; then
    TL_LB_STATUS=failed
    return 0
  fi

  files=$TL_LB_RING/files
  if [ ! -d "$files" ] || [ -L "$TL_LB_RING" ] || [ -L "$files" ] || [ "$(stat -c %u -- "$TL_LB_RING")" != 0 ]; then
    tl_lb_err "no standby ring in $TL_LB_RING; capturing forward only"
    TL_LB_STATUS=no-ring
    return 0
  fi

  # Freeze: ask the supervisor to rotate, so the file being written is closed and can be sent. The
  # request is a token appended to rotate.request, not a signal (a signal can be lost to bash's
  # trap handling); the supervisor answers each token in rotations.log once the new tcpdump runs.
  spid=$(cat "$TL_LB_RING/supervisor.pid" 2>/dev/null || true)
  closed_before=""
  if tl_lb_is "$spid" supervisor; then
    TL_LB_RING_STATE=running
    token="$TL_LB_ASKED-$$"
    if printf '%s\n' "$token" >>"$TL_LB_RING/rotate.request"; then
      # The supervisor looks once a second, waits for tcpdump to take what the kernel holds (up to
      # 10 s for an answer, then up to 4 s more) and up to 10 s for it to stop.
      for i in $(seq 1 300); do
        if grep -q -F -- "$token " "$TL_LB_RING/rotations.log" 2>/dev/null; then
          TL_LB_ROTATED=true
          break
        fi
        if [ $((i % 10)) = 0 ] && ! tl_lb_is "$spid" supervisor; then break; fi
        sleep 0.1
      done
    fi
    tpid=$(tl_lb_state TCPDUMP_PID)
    if [ "$TL_LB_ROTATED" = true ]; then
      # Every file named before the tcpdump started by this rotation is closed; the answer says
      # when that was (0: no tcpdump runs, every file is closed).
      started=$(grep -F -- "$token " "$TL_LB_RING/rotations.log" | tail -n 1 | cut -d ' ' -f 3 || true)
      if [[ $started =~ ^[1-9][0-9]*$ ]]; then closed_before=$started; fi
    elif tl_lb_is "$spid" supervisor; then
      tl_lb_err "the ring did not rotate within 30 s; the file being written was left out"
      closed_before=open
    else
      TL_LB_RING_STATE=stopped
      if tl_lb_is "$tpid" tcpdump; then
        tl_lb_err "the ring's supervisor stopped before it rotated, leaving its tcpdump running; the file being written was left out"
        closed_before=open
      else
        tl_lb_err "the ring's supervisor stopped before it rotated"
      fi
    fi
  else
    TL_LB_RING_STATE=stopped
    tpid=$(tl_lb_state TCPDUMP_PID)
    if tl_lb_is "$tpid" tcpdump; then
      tl_lb_err "the ring's supervisor is not running but its tcpdump is; the file being written was left out"
      closed_before=open
    fi
  fi

  list=$(ls -1 -- "$files" | sed -n 's/^ring-\([0-9]\{9,11\}\)\.pcap\([0-9]*\)$/\1 0\2 &/p' | sort -k1,1n -k2,2n || true)
  if [ "$closed_before" = open ]; then list=$(printf '%s\n' "$list" | sed '$d'); fi
  if [ -z "$list" ]; then
    tl_lb_err "the ring in $TL_LB_RING holds no closed files"
    TL_LB_STATUS=no-ring
    return 0
  fi
  # Select: [start, end] overlaps the window (a file that ended less than 1 s before it is sent
  # too: more evidence, never less). A file of just its 24-byte header was closed cleanly with no
  # packets: it is not sent, but its span counts as covered (the ring was recording and saw
  # nothing). A shorter file lost its data (tcpdump was killed): a gap.
  while read -r epoch suffix name; do
    [ -n "$name" ] || continue
    if [[ $closed_before =~ ^[0-9]+$ ]] && [ "$epoch" -ge "$closed_before" ]; then continue; fi
    size=$(stat -c %s -- "$files/$name" 2>/dev/null || echo 0)
    if [ "$size" -lt 24 ]; then continue; fi
    if [ "$size" -eq 24 ]; then
      end=$(date -r "$files/$name" +%s.%6N 2>/dev/null || echo 0)
      if [ "$epoch" -le "$TL_LB_NOW" ] && awk -v e="$end" -v w="$TL_LB_WINDOW_START" 'BEGIN { exit !(e + 1 >= w) }'; then
        TL_LB_SPANS="$TL_LB_SPANS$epoch $end
"
        TL_LB_SILENT=$((TL_LB_SILENT + 1))
      fi
      continue
    fi
    # Start: the earlier of the name's epoch (when tcpdump opened the file) and the first
    # packet's timestamp. tcpdump names a file when it writes the first packet after a rotation,
    # and the kernel hands packets over in blocks (up to its 1 s buffer timeout), so a file can
    # hold packets captured just before the second in its name.
    start=$(tl_lb_first_packet "$files/$name")
    if [ -z "$start" ] || awk -v a="$start" -v b="$epoch" 'BEGIN { exit !(a > b) }'; then start=$epoch; fi
    end=$(date -r "$files/$name" +%s.%6N 2>/dev/null || echo 0)
    if awk -v a="$start" -v n="$TL_LB_ASKED" -v e="$end" -v w="$TL_LB_WINDOW_START" 'BEGIN { exit !(a <= n && e + 1 >= w) }'; then
      selected="$selected$epoch $suffix $name $start $end
"
    fi
  done <<<"$list"
  if [ -z "$selected" ] && [ "$TL_LB_SILENT" -gt 0 ]; then
    # The ring recorded and saw nothing, unless something above was left out.
    if [ -n "$TL_LB_ERRORS" ]; then TL_LB_STATUS=partial; else TL_LB_STATUS=ok; fi
    return 0
  fi
  if [ -z "$selected" ]; then
    tl_lb_err "no ring file covers the window (the ring's oldest file starts at $(printf '%s\n' "$list" | head -n 1 | cut -d ' ' -f 1))"
    TL_LB_STATUS=empty
    return 0
  fi

  # Copy out of the ring (a root-only staging directory on the same disk); hard-link instead when
  # a copy would take the disk below MinFreeMegabytes.
  TL_LB_STAGE=$TL_LB_RING/lookback/$TL_LB_CAPTURE_ID
  TL_LB_UNSENT_DIR=$work_dir/unsent/$TL_LB_CAPTURE_ID
  (umask 077 && mkdir -p -- "$TL_LB_STAGE") || tl_lb_err "cannot create $TL_LB_STAGE"
  total_bytes=$(printf '%s' "$selected" | while read -r epoch suffix name start end; do stat -c %s -- "$files/$name" 2>/dev/null || echo 0; done | awk '{ s += $1 } END { printf "%.0f\n", s }')
  free_mb=$(df -Pm -- "$TL_LB_RING" | awk 'NR == 2 { print $4 }')
  method=copy
  if [ $((free_mb - total_bytes / 1000000)) -lt "$min_free" ]; then method=link; fi
  while read -r epoch suffix name start end; do
    [ -n "$name" ] || continue
    if [ "$method" = copy ]; then
      if ! cp --preserve=timestamps -- "$files/$name" "$TL_LB_STAGE/$name" 2>/dev/null; then
        rm -f -- "$TL_LB_STAGE/$name"
        tl_lb_err "$name left the ring before it could be copied"
        continue
      fi
    elif ! ln -- "$files/$name" "$TL_LB_STAGE/$name" 2>/dev/null; then
      tl_lb_err "$name left the ring before it could be linked"
      continue
    fi
    TL_LB_PENDING="$TL_LB_PENDING$epoch $suffix $name $start $end
"
  done <<<"$selected"

  # The AWS CLI v2: the one the capture script already found, else the first v2 on this host (a
  # v1 earlier on PATH is skipped). Only looked for once there is something to send.
  TL_LB_AWS=$aws
  if [ -z "$TL_LB_AWS" ]; then
    for candidate in /usr/local/bin/aws /usr/bin/aws "$(command -v aws || true)"; do
      if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version 2>&1 | grep -q '^aws-cli/2\.'; then
        TL_LB_AWS=$candidate
        break
      fi
    done
  fi
  if [ -z "$TL_LB_AWS" ]; then tl_lb_err "AWS CLI v2 is not installed; the look-back files stay on disk"; fi
  return 0
}

# tl_lb_upload_pending [N]: upload up to N staged copies, oldest first (all when N is absent).
tl_lb_upload_pending() {
  local max=1000000 done_count=0 epoch suffix name start end rest size hex b64 key out attempt delay
  if [ "$#" -gt 0 ]; then max=$1; fi
  while [ -n "$TL_LB_PENDING" ] && [ "$done_count" -lt "$max" ]; do
    read -r epoch suffix name start end <<<"$TL_LB_PENDING"
    rest=$(printf '%s' "$TL_LB_PENDING" | sed '1d')
    if [ -n "$rest" ]; then TL_LB_PENDING="$rest
"; else TL_LB_PENDING=""; fi
    done_count=$((done_count + 1))
    [ -n "$name" ] && [ -f "$TL_LB_STAGE/$name" ] || continue
    size=$(stat -c %s -- "$TL_LB_STAGE/$name")
    hex=$(sha256sum -- "$TL_LB_STAGE/$name" | cut -d ' ' -f 1)
    b64=$(printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | base64 -w 0)
    key="pcaps/$TL_LB_CAPTURE_ID/$TL_LB_INSTANCE/lookback-$(date -u -d "@$epoch" +%Y%m%dT%H%M%SZ)-$suffix.pcap"
    attempt=1
    delay=1
    out=""
    while [ -n "$TL_LB_AWS" ]; do
      if [ -n "$TL_LB_ENDPOINT" ]; then set -- --endpoint-url "$TL_LB_ENDPOINT"; else set --; fi
      if out=$("$TL_LB_AWS" "$@" --region "$TL_LB_REGION" --cli-connect-timeout 10 s3api put-object \
        --bucket "$TL_LB_BUCKET" --key "$key" --body "$TL_LB_STAGE/$name" \
        --checksum-algorithm SHA256 --checksum-sha256 "$b64" \
        --server-side-encryption aws:kms --ssekms-key-id "$TL_LB_KMS" \
        --metadata "sha256=$hex,capture-id=$TL_LB_CAPTURE_ID,instance-id=$TL_LB_INSTANCE,time-start=$start,time-end=$end,lookback=true" \
        --query VersionId --output text 2>"$TL_LB_STAGE/upload.log"); then
        break
      fi
      out=""
      if [ "$attempt" -ge "$TL_LB_ATTEMPTS" ]; then break; fi
      sleep "$delay"
      attempt=$((attempt + 1))
      delay=$((delay * 2))
    done
    if [ -n "$out" ]; then
      rm -f -- "$TL_LB_STAGE/$name"
      if [ -n "$LOOKBACK_FILES_JSON" ]; then LOOKBACK_FILES_JSON="$LOOKBACK_FILES_JSON,"; fi
      LOOKBACK_FILES_JSON="$LOOKBACK_FILES_JSON{\"key\":\"$key\",\"versionId\":\"$(tl_lb_esc "$out")\",\"size\":$size,\"sha256\":\"$hex\",\"s3ChecksumSha256\":\"$b64\",\"lookback\":true,\"start\":$start,\"end\":$end}"
      LOOKBACK_FILE_COUNT=$((LOOKBACK_FILE_COUNT + 1))
      LOOKBACK_BYTES=$((LOOKBACK_BYTES + size))
      TL_LB_SPANS="$TL_LB_SPANS$start $end
"
    else
      LOOKBACK_FAILED=1
      (umask 077 && mkdir -p -- "$TL_LB_UNSENT_DIR") || true
      if mv -f -- "$TL_LB_STAGE/$name" "$TL_LB_UNSENT_DIR/$(basename -- "$key")" 2>/dev/null; then
        if [ -n "$LOOKBACK_UNSENT_JSON" ]; then LOOKBACK_UNSENT_JSON="$LOOKBACK_UNSENT_JSON,"; fi
        LOOKBACK_UNSENT_JSON="$LOOKBACK_UNSENT_JSON{\"path\":\"$TL_LB_UNSENT_DIR/$(basename -- "$key")\",\"key\":\"$key\",\"size\":$size,\"sha256\":\"$hex\",\"lookback\":true}"
      fi
      if [ -n "$TL_LB_AWS" ]; then
        tl_lb_err "upload of $key failed after $TL_LB_ATTEMPTS attempts ($(tail -n 1 "$TL_LB_STAGE/upload.log" 2>/dev/null || true)); kept in $TL_LB_UNSENT_DIR"
      else
        tl_lb_err "$key was not uploaded; kept in $TL_LB_UNSENT_DIR"
      fi
    fi
  done
  return 0
}

# tl_lb_finish: every staged copy still waiting is kept in WorkDir/unsent; LOOKBACK_JSON is set.
tl_lb_finish() {
  local complete=false status cover cov_start=null cov_end=null gaps=""
  [ "$TL_LB_ACTIVE" = 1 ] || return 0
  if [ -n "$TL_LB_PENDING" ]; then
    TL_LB_AWS=""
    tl_lb_upload_pending
  fi
  if [ -n "$TL_LB_STAGE" ]; then
    rm -f -- "$TL_LB_STAGE/upload.log"
    rmdir -- "$TL_LB_STAGE" "$TL_LB_RING/lookback" 2>/dev/null || true
  fi
  # Coverage: the spans of the files sent plus the header-only ones, in time order; a jump of
  # more than 2 s between one span's end and the next one's start is a gap. Complete: no gap, and
  # the spans reach from the window's start to within 2 s of the request.
  if [ -n "$TL_LB_SPANS" ]; then
    cover=$(printf '%s' "$TL_LB_SPANS" | sort -k1,1g | awk '
      NR == 1 { first = $1; last = $2; next }
      { if ($1 - last > 2) gaps = gaps (gaps == "" ? "" : ",") "[" last "," $1 "]"; if ($2 > last) last = $2 }
      END { print first, last, gaps }')
    read -r cov_start cov_end gaps <<<"$cover"
    if [ -z "$gaps" ] && awk -v a="$cov_start" -v b="$TL_LB_WINDOW_START" -v e="$cov_end" -v n="$TL_LB_ASKED" 'BEGIN { exit !(a <= b && e + 2 >= n) }'; then
      complete=true
    fi
  fi
  status=$TL_LB_STATUS
  if [ -z "$status" ]; then
    if [ "$LOOKBACK_FILE_COUNT" -eq 0 ]; then
      status=failed
    elif [ -n "$TL_LB_ERRORS" ]; then
      status=partial
    else
      status=ok
    fi
  fi
  if [ "$status" = failed ] || [ "$status" = partial ]; then LOOKBACK_FAILED=1; fi
  LOOKBACK_JSON=$(printf '{"status":"%s","requestedSeconds":%s,"windowStart":%s,"windowEnd":%s,"ringDirectory":"%s","ring":"%s","rotated":%s,"fileCount":%s,"bytes":%s,"silentFiles":%s,"coverageStart":%s,"coverageEnd":%s,"complete":%s,"gaps":[%s],"errors":[%s]}' \
    "$status" "$TL_LB_SECONDS" "$TL_LB_WINDOW_START" "$TL_LB_ASKED" "$(tl_lb_esc "$TL_LB_RING")" \
    "$TL_LB_RING_STATE" "$TL_LB_ROTATED" "$LOOKBACK_FILE_COUNT" "$LOOKBACK_BYTES" "$TL_LB_SILENT" \
    "$cov_start" "$cov_end" "$complete" "$gaps" "$TL_LB_ERRORS")
  TL_LB_ACTIVE=0
  echo "tapline: look-back: $LOOKBACK_JSON" >&2
  return 0
}

tl_lb_run() {
  tl_lb_freeze "$1" "$2" || tl_lb_err "the look-back freeze failed unexpectedly"
  tl_lb_upload_pending || tl_lb_err "the look-back upload failed unexpectedly"
  tl_lb_finish
}

# tl_lb_requested: true when SSM_LookbackSeconds asks for a look-back.
tl_lb_requested() { [[ $(printenv SSM_LookbackSeconds || echo 0) =~ ^0*[1-9][0-9]{0,4}$ ]]; }
# ---- end of the look-back step ----------------------------------------------------------------
