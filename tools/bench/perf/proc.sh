# shellcheck shell=bash
# CPU of processes for the benchmark scripts (tools/bench/*/bench-*), in clock
# ticks (getconf CLK_TCK a second): source it.

# utime + stime of process $1 (0 once it has gone).
perf_cpu_ticks() {
  local f
  read -r -a f < <(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  echo $((f[11] + f[12]))
}

# A server and its children, as Postgres's: utime, stime, cutime and cstime
# of process $1 (its reaped children's included) plus utime and stime of its
# live children.
perf_tree_cpu_ticks() {
  local f total p
  read -r -a f < <(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  total=$((f[11] + f[12] + f[13] + f[14]))
  for p in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
    total=$((total + $(perf_cpu_ticks "$p")))
  done
  echo "$total"
}
