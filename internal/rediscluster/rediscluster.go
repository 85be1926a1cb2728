// Package rediscluster starts a throwaway Redis Cluster on loopback ports
// — redis-server in cluster mode, joined with redis-cli --cluster create —
// for tests and benchmarks that must run against a real Cluster.
package rediscluster

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is n masters without replicas.
type Cluster struct {
	// Addrs are the nodes' host:port; URL lists them as REDIS_URL takes
	// them.
	Addrs []string
	URL   string
	cmds  []*exec.Cmd
}

// Start starts n nodes with their files under dir and waits, at most
// within, until every node reports cluster_state:ok.
func Start(n int, dir string, within time.Duration) (*Cluster, error) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is not installed (apt-get install redis-server)", bin)
		}
	}
	c := &Cluster{}
	var urls []string
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.Stop()
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		nd := filepath.Join(dir, "node"+strconv.Itoa(i))
		cmd := exec.Command("sh", "-c", "mkdir -p \"$0\" && exec redis-server --port \"$1\" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file \"$0/nodes.conf\" --save '' --appendonly no --dir \"$0\" --logfile \"$0/redis.log\"", nd, strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			c.Stop()
			return nil, err
		}
		c.cmds = append(c.cmds, cmd)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		c.Addrs = append(c.Addrs, addr)
		urls = append(urls, "redis://"+addr)
	}
	c.URL = strings.Join(urls, ",")
	deadline := time.Now().Add(within)
	wait := func(a string, ok func(*redis.Client) bool) error {
		one := redis.NewClient(&redis.Options{Addr: a})
		defer one.Close()
		for !ok(one) {
			if time.Now().After(deadline) {
				return fmt.Errorf("cluster node %s is not ready after %v", a, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	for _, a := range c.Addrs {
		if err := wait(a, func(r *redis.Client) bool { return r.Ping(context.Background()).Err() == nil }); err != nil {
			c.Stop()
			return nil, err
		}
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	if out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range c.Addrs {
		if err := wait(a, func(r *redis.Client) bool {
			info, _ := r.ClusterInfo(context.Background()).Result()
			return strings.Contains(info, "cluster_state:ok")
		}); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// Client returns a cluster client on the nodes.
func (c *Cluster) Client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, Protocol: 2})
}

// Stop stops every node and waits for it.
func (c *Cluster) Stop() {
	for _, cmd := range c.cmds {
		if cmd.Process != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
	}
	c.cmds = nil
}
