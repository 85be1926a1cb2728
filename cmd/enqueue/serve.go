package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/bearer"
	"github.com/widgetq/widgetq/internal/httpapi"
)

func newServeCmd(a *app) *cobra.Command {
	var addr string
	var maxBody int64
	var maxItems int
	cmd := &cobra.Command{
		Use:   "serve [--addr HOST:PORT]",
		Short: "Serve the producer API over HTTP (api/openapi.yaml)",
		Long: `Serves widgetq's producer API for backends not written in Go:

  POST /v1/installs               one install, or an array (bulk-line fields)
  POST /v1/uninstalls             one uninstall, or an array
  GET  /v1/accounts/{id}/results  the account's results
  PUT  /v1/accounts/{id}          the account's credentials

Every request needs "Authorization: Bearer $WIDGETQ_API_TOKEN"; serve refuses
to start without the variable. A comma-separated list accepts any of its
tokens, so a token can be rotated without downtime. Errors are application/problem+json naming
the bad field; an array gets one outcome per item. With WIDGETQ_SECRET_KEY,
settings and tokens are sealed as enqueue seals them.`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tokens := bearer.Parse(a.getenv("WIDGETQ_API_TOKEN"))
			if len(tokens) == 0 {
				return usagef("WIDGETQ_API_TOKEN is not set: the API needs a bearer token")
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			log := slog.New(slog.NewJSONHandler(a.stderr, nil))
			api := &httpapi.Server{Prod: a.prod, Store: a.st, Tokens: tokens, MaxBody: maxBody, MaxItems: maxItems, Logger: log}
			srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
			log.Info("serving the producer API", "addr", l.Addr().String(), "redis", a.conn.Display)
			ctx := cmd.Context()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			log.Info("stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "where to listen")
	f.Int64Var(&maxBody, "max-body", httpapi.DefaultMaxBody, "largest request body in bytes")
	f.IntVar(&maxItems, "max-items", httpapi.DefaultMaxItems, "most items in one request")
	return cmd
}
