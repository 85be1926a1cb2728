// Package fleettest runs widgetq the way it is deployed, for tests: worker
// (and enqueue) binaries as real processes, a Kommo sandbox over real HTTP,
// and a real Redis — REDIS_URL's, or a redis-server of the test's own that
// it may stop and restart.
package fleettest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/rediscluster"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/testenv"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// Build compiles a command package with the race detector into dir and
// returns the binary's path.
func Build(pkg, dir string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-race", "-o", out, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// Fleet is a sandbox, a Redis, and the processes serving one queue.
type Fleet struct {
	URL    string // Redis, for the processes
	Client redis.UniversalClient
	Prefix string
	Queue  string
	SB     *sandbox.Server
	Srv    *httptest.Server
	St     *store.Store
	Prod   *producer.Producer
	// Env is added to every process's environment.
	Env []string
}

// New builds a fleet on the test's Redis (redistest.New) or, with url and
// client set, on that server.
func New(t testing.TB, cfg sandbox.Config, url string, client redis.UniversalClient) *Fleet {
	t.Helper()
	if client == nil {
		r := redistest.New(t)
		url, client = r.URL, r.Client
	}
	f := &Fleet{URL: url, Client: client, Prefix: redistest.Unique(t)}
	f.Queue = "q-" + f.Prefix
	redistest.Forget(t, client, f.Prefix, f.Queue)
	f.SB = sandbox.New(cfg)
	f.Srv = httptest.NewServer(f.SB)
	f.SB.SetAPIDomain(strings.TrimPrefix(f.Srv.URL, "http://"))
	t.Cleanup(func() { f.SB.Close(); f.Srv.Close() })
	f.St = store.New(client, f.Prefix)
	f.Prod = producer.New(client, f.Prefix, asynq.Queue(f.Queue))
	t.Cleanup(func() { f.Prod.Close() })
	return f
}

// Sub is the sandbox subdomain of an account.
func Sub(id int) string { return fmt.Sprintf("a%d", id) }

// AddAccounts creates accounts first..first+n-1 in the sandbox and stores
// their administrator's tokens.
func (f *Fleet) AddAccounts(t testing.TB, first, n int) {
	t.Helper()
	for id := first; id < first+n; id++ {
		if err := f.SB.AddAccount(sandbox.AccountSpec{ID: id, Subdomain: Sub(id)}); err != nil {
			t.Fatal(err)
		}
		tok, _ := f.SB.IssueTokens(Sub(id), 0)
		if err := f.St.PutAccount(context.Background(), store.Account{ID: int64(id), BaseURL: sandbox.BaseURL(f.Srv.URL, Sub(id)),
			AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
			t.Fatal(err)
		}
	}
}

// Install enqueues one install through the producer API.
func (f *Fleet) Install(t testing.TB, account int64, code, settings string) {
	t.Helper()
	if out, err := f.Prod.Install(context.Background(), tasks.InstallWidgetPayload{AccountID: account, WidgetCode: code, Settings: json.RawMessage(settings)}); err != nil || out != producer.Queued {
		t.Fatalf("enqueue %d/%s: %s %v", account, code, out, err)
	}
}

// WaitAllFinal waits until n results exist and none is queued or retrying.
func (f *Fleet) WaitAllFinal(t testing.TB, n int64, within time.Duration) map[store.Status]int64 {
	t.Helper()
	var counts map[store.Status]int64
	waitfor.Until(t, within, func() (bool, string) {
		var err error
		counts, err = f.St.CountByStatus(context.Background())
		var total int64
		for _, c := range counts {
			total += c
		}
		return err == nil && total == n && counts[store.StatusQueued] == 0 && counts[store.StatusRetrying] == 0,
			fmt.Sprintf("not all final: %v (%v); sandbox %+v", counts, err, f.SB.Counters().Total)
	})
	return counts
}

// WaitCount waits until at least n results have status s.
func (f *Fleet) WaitCount(t testing.TB, s store.Status, n int64, within time.Duration) {
	t.Helper()
	waitfor.Until(t, within, func() (bool, string) {
		counts, _ := f.St.CountByStatus(context.Background())
		return counts[s] >= n, fmt.Sprintf("%d %s not reached: %v", n, s, counts)
	})
}

// InstalledOnceEach fails the test unless the sandbox installed code in
// every account first..first+n-1 exactly once.
func (f *Fleet) InstalledOnceEach(t testing.TB, first, n int, code string) {
	t.Helper()
	c := f.SB.Counters()
	for id := first; id < first+n; id++ {
		if k := c.Installs(id, code); k != 1 {
			t.Fatalf("account %d: %s installed %d times, want 1", id, code, k)
		}
	}
}

// Archived is how many tasks asynq archived in the fleet's queue.
func (f *Fleet) Archived(t testing.TB) int {
	t.Helper()
	qi, err := asynq.NewInspectorFromRedisClient(f.Client).GetQueueInfo(f.Queue)
	if err != nil {
		t.Fatal(err)
	}
	return qi.Archived
}

// WorkerEnv is the environment of a worker on the fleet's queue.
func (f *Fleet) WorkerEnv() []string {
	return append([]string{
		"REDIS_URL=" + f.URL, "WIDGETQ_PREFIX=" + f.Prefix, "WIDGETQ_QUEUES=" + f.Queue, "WIDGETQ_QUEUE=" + f.Queue,
		"KOMMO_CLIENT_ID=" + sandbox.DefaultClientID, "KOMMO_CLIENT_SECRET=" + sandbox.DefaultClientSecret,
		"WIDGETQ_RETRY_BASE=200ms", "WIDGETQ_RETRY_CAP=1s", "WIDGETQ_REQUEST_TIMEOUT=5s", "WIDGETQ_LOG_FORMAT=json", "WIDGETQ_CONCURRENCY=30",
		"WIDGETQ_ADMIN_ADDR=127.0.0.1:0", "WIDGETQ_KOMMO_HOSTS=127.0.0.1",
	}, f.Env...)
}

// Proc is a process the test started.
type Proc struct {
	Cmd  *exec.Cmd
	Out  *Buffer
	done chan struct{}
	err  error
}

// Buffer is a bytes.Buffer safe for a process and a test to share.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// Bytes is what was written so far.
func (l *Buffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

// Run starts bin with env and args; the process is killed when the test
// ends, and its output's tail logged if the test failed.
func Run(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	return RunStdin(t, bin, env, nil, args...)
}

// RunStdin is Run with the process reading stdin.
func RunStdin(t testing.TB, bin string, env []string, stdin io.Reader, args ...string) *Proc {
	t.Helper()
	p := &Proc{Out: &Buffer{}, done: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdin = stdin
	p.Cmd.Stdout, p.Cmd.Stderr = p.Out, p.Out
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s %d output (tail):\n%s", filepath.Base(bin), p.Cmd.Process.Pid, Tail(p.Out.String(), 3000))
		}
	})
	return p
}

// Exited waits for the process to exit, at most within, and returns
// whether it did and how.
func (p *Proc) Exited(within time.Duration) (bool, error) {
	select { // already gone: say so, whatever within is
	case <-p.done:
		return true, p.err
	default:
	}
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(within):
		return false, nil
	}
}

// WaitOutput waits until the process has written s.
func (p *Proc) WaitOutput(t testing.TB, s string, within time.Duration) {
	t.Helper()
	waitfor.Until(t, within, func() (bool, string) {
		return strings.Contains(p.Out.String(), s), fmt.Sprintf("no %q in:\n%s", s, Tail(p.Out.String(), 3000))
	})
}

// StartWorker runs a worker binary on the fleet's queue and waits until it
// says it started.
func (f *Fleet) StartWorker(t testing.TB, bin string, extra ...string) *Proc {
	t.Helper()
	p := Run(t, bin, f.WorkerEnv(), extra...)
	p.WaitOutput(t, "worker started", 60*time.Second)
	return p
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// Server is a redis-server of the test's own, on a loopback port, that
// the test may stop and start again (same port, same data directory).
type Server struct {
	Port int
	Addr string
	URL  string
	dir  string
	args []string
	cmd  *exec.Cmd
}

// FreePort returns a loopback port nothing listens on (as of now).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NewServer prepares (does not start) a redis-server with the append-only
// file on, so a restart keeps what was written.
func NewServer(t testing.TB, port int) *Server {
	t.Helper()
	path := testenv.Program(t, "redis-server")
	s := &Server{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir()}
	s.URL = "redis://" + s.Addr + "/0"
	s.args = []string{path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")}
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server and waits until it answers.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	waitfor.Until(t, 15*time.Second, func() (bool, string) {
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		return c.Ping(context.Background()).Err() == nil, fmt.Sprintf("redis-server on %s did not answer:\n%s", s.Addr, log)
	})
}

// Stop shuts the server down the way an operator would (SIGTERM: it
// flushes the append-only file) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Cluster is a Redis Cluster of the test's own: n masters on loopback
// ports, no replicas.
type Cluster struct {
	// URL lists the nodes as REDIS_URL takes them.
	URL    string
	Client *redis.ClusterClient
	Addrs  []string
}

// StartCluster starts n nodes (internal/rediscluster) and stops them with
// the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	testenv.Program(t, "redis-server")
	testenv.Program(t, "redis-cli")
	rc, err := rediscluster.Start(n, t.TempDir(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Stop)
	c := &Cluster{URL: rc.URL, Addrs: rc.Addrs, Client: rc.Client()}
	t.Cleanup(func() { c.Client.Close() })
	return c
}

// NodeOf returns the address of the node serving key.
func (c *Cluster) NodeOf(t testing.TB, key string) string {
	t.Helper()
	ctx := context.Background()
	slot, err := c.Client.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := c.Client.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return ""
}
