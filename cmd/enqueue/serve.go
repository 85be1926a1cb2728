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
	"github.com/widgetq/widgetq/internal/store"
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
  GET  /v1/batches/{id}           a batch's counts, and whether it is done
  GET  /oauth/callback            Kommo's install redirect (no token)
  GET  /oauth/revoked             Kommo's revoke hook (no token)

Every /v1 request needs "Authorization: Bearer $WIDGETQ_API_TOKEN"; serve refuses
to start without the variable. A comma-separated list accepts any of its
tokens, so a token can be rotated without downtime. Errors are application/problem+json naming
the bad field; an array gets one outcome per item. With WIDGETQ_SECRET_KEY,
settings and tokens are sealed as enqueue seals them.

Set each integration's redirect URI (and revoke hook) in Kommo to this
server's /oauth/callback (and /oauth/revoked): an account that installs
the integration is connected — its code exchanged by a worker, its
credentials stored, the integration's install-on-connect widgets queued —
and one that disconnects has its credentials marked revoked. Integrations
are those registered with 'enqueue integrations add', and KOMMO_CLIENT_ID
(KOMMO_CLIENT_SECRET, KOMMO_REDIRECT_URI) as the one named default.`,
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
			api := &httpapi.Server{Prod: a.prod, Store: a.st, Tokens: tokens, MaxBody: maxBody, MaxItems: maxItems, Logger: log, Webhook: a.webhook}
			if id := a.getenv("KOMMO_CLIENT_ID"); id != "" {
				api.Default = &store.Integration{Name: store.DefaultIntegration, ClientID: id, ClientSecret: a.getenv("KOMMO_CLIENT_SECRET"),
					RedirectURI: a.getenv("KOMMO_REDIRECT_URI")}
			}
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
