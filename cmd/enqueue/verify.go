package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

func newVerifyCmd(a *app) *cobra.Command {
	var f resultFilter
	cmd := &cobra.Command{
		Use:   "verify [--account ID] [--widget CODE] [--batch ID] [--integration NAME]",
		Short: "Ask Kommo whether recorded installs still stand; record drift",
		Long: `Queues a check of every install the filters select whose result says
installed (or already_installed). Workers ask Kommo, within each account's
rate budget, whether the widget is still active and its non-secret settings
are still those installed (compared by fingerprint: no value is kept). An
install still standing gets verified_at; drift becomes a failed result:

  drift_uninstalled   a user uninstalled the widget in Kommo
  drift_settings      a user changed its settings (the detail names the keys)

'enqueue results --class drift_settings' lists them; 'enqueue replay --class
drift_settings' installs them again while asynq still keeps the install
task (24 h), else enqueue them from their source.`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.account == 0 && f.widget == "" && f.batch == "" && f.integ == "" {
				return usagef("verify needs a filter (--account, --widget, --batch, --integration); verify --all is not offered: every check is a request to Kommo")
			}
			queued, already := 0, 0
			for _, status := range []store.Status{store.StatusInstalled, store.StatusAlreadyInstalled} {
				f.status = string(status)
				err := a.eachResult(cmd.Context(), f, func(r *store.Result) error {
					if r.Operation != "install" || r.EnqueueID == "" {
						return nil
					}
					out, err := a.prod.Verify(cmd.Context(), tasks.VerifyWidgetPayload{AccountID: r.AccountID, WidgetCode: r.WidgetCode,
						EnqueueID: r.EnqueueID, Integration: r.Integration})
					switch {
					case err != nil:
						return err
					case out == producer.AlreadyQueued:
						already++
					default:
						queued++
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stdout, "queued %d checks (%d already queued); drift shows as failed results: enqueue results --class drift_uninstalled, --class drift_settings\n", queued, already)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&f.account, "account", 0, "only this account")
	fl.StringVar(&f.widget, "widget", "", "only this widget code")
	fl.StringVar(&f.batch, "batch", "", "only this batch's installs")
	fl.StringVar(&f.integ, "integration", "", "only this integration's installs")
	return cmd
}
