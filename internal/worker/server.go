package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/webhook"
	"github.com/widgetq/widgetq/tasks"
)

// ServerConfig tunes the asynq server around a Handler.
type ServerConfig struct {
	// Client, when set, is the Redis client the server uses instead of
	// one of its own on opt (the worker's auto-pipelined client: asynq's
	// completions then share round trips with the handler's calls). It is
	// not closed with the server.
	Client redis.UniversalClient
	// Concurrency is how many tasks run at once in this process (default 50).
	Concurrency int
	// Queues and their priorities (default: tasks.DefaultQueue only).
	Queues map[string]int
	// ShutdownTimeout is how long running tasks may finish after a stop
	// before they are put back in the queue (default 25s).
	ShutdownTimeout time.Duration
	// DelayedCheck is how often deferred and retried tasks are moved back
	// to pending (default 1s; asynq's 5s would idle rate-deferred work).
	DelayedCheck time.Duration
	// TaskCheck is how long a server whose queues were empty waits before
	// it looks again (default 100ms: with asynq's 1s, from 0.5 to 1.5 s,
	// the first tasks of a batch sat that long on an idle worker — a
	// second of a 10-second onboarding). One dequeue call per wait.
	TaskCheck time.Duration
	// Logger receives asynq's own messages (default slog.Default()).
	Logger *slog.Logger
	// HealthCheck is called with Redis ping errors (nil when healthy).
	HealthCheck func(error)
}

// NewServer returns an asynq server that runs h with widgetq's retry
// policy, and its mux.
func NewServer(opt asynq.RedisConnOpt, h *Handler, cfg ServerConfig) (*asynq.Server, *asynq.ServeMux) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 50
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = map[string]int{tasks.DefaultQueue: 1}
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 25 * time.Second
	}
	if cfg.DelayedCheck <= 0 {
		cfg.DelayedCheck = time.Second
	}
	if cfg.TaskCheck <= 0 {
		cfg.TaskCheck = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	policy := h.cfg.Policy
	acfg := asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   cfg.Queues,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		DelayedTaskCheckInterval: cfg.DelayedCheck,
		TaskCheckInterval:        cfg.TaskCheck,
		RetryDelayFunc: func(n int, err error, t *asynq.Task) time.Duration {
			if t != nil && t.Type() == webhook.TypeDeliver {
				return webhook.Delay(n) // 1 s doubling, up to 24 h
			}
			return policy.Delay(n, err)
		},
		IsFailure:       retry.IsFailure,
		Logger:          asynqLogger{cfg.Logger},
		LogLevel:        asynq.InfoLevel,
		HealthCheckFunc: cfg.HealthCheck,
	}
	var srv *asynq.Server
	if cfg.Client != nil {
		srv = asynq.NewServerFromRedisClient(cfg.Client, acfg)
	} else {
		srv = asynq.NewServer(opt, acfg)
	}
	mux := asynq.NewServeMux()
	h.Register(mux)
	return srv, mux
}

// asynqLogger sends asynq's messages to slog, marked as asynq's.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) log(level slog.Level, args ...any) {
	a.l.Log(context.Background(), level, fmt.Sprint(args...), "component", "asynq")
}

func (a asynqLogger) Debug(args ...any) { a.log(slog.LevelDebug, args...) }
func (a asynqLogger) Info(args ...any)  { a.log(slog.LevelInfo, args...) }
func (a asynqLogger) Warn(args ...any)  { a.log(slog.LevelWarn, args...) }
func (a asynqLogger) Error(args ...any) { a.log(slog.LevelError, args...) }
func (a asynqLogger) Fatal(args ...any) {
	a.log(slog.LevelError, args...)
	os.Exit(1)
}
