package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// cpuSnap is the CPU the bench's processes and Redis had used at one
// moment, and Redis's command counts: two of them, a phase apart, say what
// a phase cost per task and where.
type cpuSnap struct {
	procs map[int]procCPU // by pid
	redis float64         // seconds, user+sys
	reads int64           // Redis's reads from clients: its round trips
	cmds  map[string]int64
	usec  map[string]int64
}

type procCPU struct {
	name string
	sec  float64
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux the bench runs on).
const clockTick = 100

// snapCPU reads /proc for each running process the bench started and INFO
// from Redis.
func (b *bench) snapCPU(ctx context.Context) cpuSnap {
	s := cpuSnap{procs: map[int]procCPU{}, cmds: map[string]int64{}, usec: map[string]int64{}}
	b.mu.Lock()
	procs := append([]*exec.Cmd(nil), b.procs...)
	b.mu.Unlock()
	for _, p := range procs {
		if p.Process == nil {
			continue
		}
		if sec, ok := procSeconds(p.Process.Pid); ok {
			s.procs[p.Process.Pid] = procCPU{name: procName(p), sec: sec}
		}
	}
	if info, err := b.rdb.Info(ctx, "cpu", "stats", "commandstats").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			line = strings.TrimSpace(line)
			if v, ok := strings.CutPrefix(line, "used_cpu_user:"); ok {
				f, _ := strconv.ParseFloat(v, 64)
				s.redis += f
			} else if v, ok := strings.CutPrefix(line, "used_cpu_sys:"); ok {
				f, _ := strconv.ParseFloat(v, 64)
				s.redis += f
			} else if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
				s.reads, _ = strconv.ParseInt(v, 10, 64)
			} else if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok {
				name, fields, _ := strings.Cut(rest, ":")
				for _, kv := range strings.Split(fields, ",") {
					if v, ok := strings.CutPrefix(kv, "calls="); ok {
						s.cmds[name], _ = strconv.ParseInt(v, 10, 64)
					} else if v, ok := strings.CutPrefix(kv, "usec="); ok {
						s.usec[name], _ = strconv.ParseInt(v, 10, 64)
					}
				}
			}
		}
	}
	return s
}

// procName is the binary a process runs, or its subcommand for the
// bench's own handlers (naive-worker, noop-worker).
func procName(c *exec.Cmd) string {
	name := filepath.Base(c.Path)
	if name == "widgetq-bench" && len(c.Args) > 1 {
		return c.Args[1]
	}
	return name
}

// procSeconds is a process's user+system CPU from /proc/PID/stat.
func procSeconds(pid int) (float64, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(raw[i+1:]))
	// After ')': state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return (ut + st) / clockTick, true
}

// cpuUse is what a phase cost per task: CPU microseconds by process
// (summed by name) and Redis's, and Redis commands by name.
type cpuUse struct {
	// MicrosPerTask is CPU µs per task by process name, "redis-server"
	// included, and "total".
	MicrosPerTask map[string]float64 `json:"cpu_us_per_task"`
	// RedisRoundTripsPerTask is how often per task Redis read a client's
	// request: its round trips (a pipeline is one), the bench's own polls
	// included.
	RedisRoundTripsPerTask float64 `json:"redis_round_trips_per_task"`
	// RedisCallsPerTask is Redis's commands per task by name (those a Lua
	// script runs included), the most frequent first in String.
	RedisCallsPerTask map[string]float64 `json:"redis_calls_per_task"`
	// RedisMicrosPerTask is the time Redis spent in each command per task
	// (a script's time includes its commands').
	RedisMicrosPerTask map[string]float64 `json:"redis_us_per_task"`
}

// since is the use from s0 to s1 over n tasks.
func since(s0, s1 cpuSnap, n int) cpuUse {
	u := cpuUse{MicrosPerTask: map[string]float64{}, RedisCallsPerTask: map[string]float64{}, RedisMicrosPerTask: map[string]float64{}}
	if n <= 0 {
		return u
	}
	per := func(sec float64) float64 { return round(sec * 1e6 / float64(n)) }
	var total float64
	for pid, p := range s1.procs {
		d := p.sec - s0.procs[pid].sec
		u.MicrosPerTask[p.name] += d
		total += d
	}
	u.MicrosPerTask["redis-server"] = s1.redis - s0.redis
	total += s1.redis - s0.redis
	u.MicrosPerTask["total"] = total
	u.RedisRoundTripsPerTask = round(float64(s1.reads-s0.reads) / float64(n))
	for k, v := range u.MicrosPerTask {
		u.MicrosPerTask[k] = per(v)
	}
	for name, c := range s1.cmds {
		if d := c - s0.cmds[name]; d > 0 {
			u.RedisCallsPerTask[name] = round(float64(d) / float64(n))
			u.RedisMicrosPerTask[name] = round(float64(s1.usec[name]-s0.usec[name]) / float64(n))
		}
	}
	return u
}

// String is the use in one line: CPU by process, then the commands.
func (u cpuUse) String() string {
	var b strings.Builder
	keys := make([]string, 0, len(u.MicrosPerTask))
	for k := range u.MicrosPerTask {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %.0fµs ", k, u.MicrosPerTask[k])
	}
	cmds := make([]string, 0, len(u.RedisCallsPerTask))
	for k := range u.RedisCallsPerTask {
		cmds = append(cmds, k)
	}
	sort.Slice(cmds, func(i, j int) bool { return u.RedisCallsPerTask[cmds[i]] > u.RedisCallsPerTask[cmds[j]] })
	fmt.Fprintf(&b, "| redis round trips/task %.2f:", u.RedisRoundTripsPerTask)
	for _, k := range cmds {
		if c := u.RedisCallsPerTask[k]; c >= 0.1 {
			fmt.Fprintf(&b, " %s %.2f (%.1fµs)", k, c, u.RedisMicrosPerTask[k])
		}
	}
	return b.String()
}
