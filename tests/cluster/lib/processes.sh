# Sourced by tests/cluster/cluster.sh: daemons of a cluster directory (DIR/pids, DIR/logs).
# shellcheck shell=bash

readonly STOP_GRACE_SECS=10

# Prints N distinct free loopback TCP ports (bound together, then released).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# The executable of a running pid ("" when gone), without the " (deleted)" suffix.
pid_exe() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 0
  echo "${exe% (deleted)}"
}

pid_cmdline() {
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# pid_is PID BINARY DIR: the pid runs BINARY with a path under DIR on its command line.
pid_is() {
  local pid="$1" binary="$2" dir="$3"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(pid_exe "$pid")" == "$(readlink -f "$binary" 2>/dev/null || echo "$binary")" ]] || return 1
  [[ "$(pid_cmdline "$pid")" == *"$dir/"* ]]
}

# spawn NAME BINARY ARGS...: start a detached daemon (own session, no inherited fds) with its
# output in DIR/logs/NAME.log and its pid in DIR/pids/NAME.pid.
spawn() {
  local name="$1" pidfile="$DIR/pids/$1.pid" i
  shift
  rm -f "$pidfile"
  # The inner shell writes its own pid, then execs the daemon: the pid is the daemon's.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$DIR/logs/$name.log" 2>&1
  for ((i = 0; i < 100; i++)); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.05
  done
  die_with_log "$name did not start" "$DIR/logs/$name.log"
}

# stop_process NAME BINARY [GRACE_SECS]: SIGTERM, then SIGKILL after GRACE_SECS (default
# STOP_GRACE_SECS), only if the recorded pid still runs BINARY for this DIR.
stop_process() {
  local name="$1" binary="$2" grace="${3:-$STOP_GRACE_SECS}" pidfile="$DIR/pids/$1.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ -n "$pid" && "$pid" != "$$" ]] && pid_is "$pid" "$binary" "$DIR"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      pid_is "$pid" "$binary" "$DIR" || break
      sleep 0.1
    done
    if pid_is "$pid" "$binary" "$DIR"; then
      log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        pid_is "$pid" "$binary" "$DIR" || break
        sleep 0.1
      done
      pid_is "$pid" "$binary" "$DIR" && die "could not stop $name (pid $pid)"
    fi
  fi
  rm -f "$pidfile"
}

